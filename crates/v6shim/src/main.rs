//! `warden-v6-shim [LISTEN [SOCKET]]`: serves until killed (default `127.0.0.1:7601` and
//! `/mnt/proxy/proxy.sock`). See the library.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .unwrap_or_else(|| warden_v6shim::LISTEN.to_owned());
    let socket = args
        .next()
        .unwrap_or_else(|| warden_v6shim::SOCKET.to_owned());
    match warden_v6shim::serve(&listen, socket.as_ref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden-v6-shim: cannot listen on {listen}: {e}");
            ExitCode::FAILURE
        }
    }
}
