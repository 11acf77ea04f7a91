//! Version 2's cost over version 1, measured as a ratio that holds on a noisy machine: each
//! round seals and opens one message in each format, in alternating order, and the medians of
//! the rounds are compared. Version 2's input side includes proving the researcher's
//! certificate, as a node does for every run.
//!
//! Run: `cargo bench -p warden-seal --bench seal_ab` (prints one line per size).

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a bench binary reports on stdout

mod fixture;

use std::time::{Duration, Instant};

use warden_seal::{Kind, open, open_input, open_result, seal, seal_input, seal_result};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn time(f: &mut dyn FnMut()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn main() {
    let fixture::Fixture {
        node,
        researcher,
        sender,
        trusted,
        input: ib,
        result: rb,
    } = fixture::fixture();
    for (name, size, rounds) in [("1 KiB", 1024usize, 4000), ("1 MiB", 1 << 20, 400)] {
        let p = vec![0x5au8; size];
        let mut v1 = || {
            let s = seal(&node.public_key(), b"warden/input/v1|collab=3|org=7", &p).unwrap();
            std::hint::black_box(open(&node, b"warden/input/v1|collab=3|org=7", &s).unwrap());
        };
        let mut input = || {
            let s = seal_input(&researcher, &sender, &node.public_key(), &ib, &p).unwrap();
            let o = open_input(&node, &s).unwrap();
            std::hint::black_box(o.prove(&trusted, 100).unwrap());
        };
        let mut result = || {
            let s = seal_result(&node, Kind::Result, &researcher.public_key(), &rb, &p).unwrap();
            std::hint::black_box(
                open_result(&researcher, &node.public_key(), Kind::Result, &s).unwrap(),
            );
        };
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..rounds + rounds / 10 {
            let (ta, tb, tc) = if i % 2 == 0 {
                (time(&mut v1), time(&mut input), time(&mut result))
            } else {
                let tc = time(&mut result);
                let tb = time(&mut input);
                (time(&mut v1), tb, tc)
            };
            // The first tenth warms up.
            if i >= rounds / 10 {
                a.push(ta);
                b.push(tb);
                c.push(tc);
            }
        }
        let (a, b, c) = (median(a), median(b), median(c));
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "{name}: v1 {:.1} µs; v2 input {:.1} µs (+{:.1} µs, {:+.1}%); v2 result {:.1} µs (+{:.1} µs, {:+.1}%); medians of {rounds} alternating rounds",
            us(a),
            us(b),
            us(b) - us(a),
            (us(b) / us(a) - 1.0) * 100.0,
            us(c),
            us(c) - us(a),
            (us(c) / us(a) - 1.0) * 100.0,
        );
    }
}
