//! The SDK's HTTP answer parser (`warden_sdk::http::parse_response`): never panics, gives the
//! same result whatever the sizes of the reads that deliver the answer, respects the body cap,
//! and an answer it accepts, re-framed with `Content-Length`, parses to the same answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_sdk::http::{MAX_HEADERS, Response, parse_response};

const CAP: usize = 4096;

fn outcome(answer: &[u8], piece: usize) -> Result<Response, String> {
    parse_response(answer, piece, CAP).map_err(|e| e.to_string())
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, answer)) = data.split_first() else {
        return;
    };
    let whole = outcome(answer, usize::MAX);
    for piece in [1, usize::from(piece).max(1)] {
        assert_eq!(
            whole,
            outcome(answer, piece),
            "reads of {piece} bytes differ"
        );
    }
    let Ok(resp) = whole else {
        return;
    };
    assert!(resp.body.len() <= CAP);
    assert!((100..=599).contains(&resp.status) && !(100..200).contains(&resp.status));
    if resp.status == 204 || resp.status == 304 {
        assert!(resp.body.is_empty());
        return;
    }
    let mut again = format!("HTTP/1.1 {} OK\r\n", resp.status).into_bytes();
    let mut headers = Vec::new();
    for (name, value) in &resp.headers {
        assert_eq!(*name, name.to_ascii_lowercase());
        assert_eq!(value.trim(), value);
        if name == "content-length" || name == "transfer-encoding" {
            continue;
        }
        headers.push((name.clone(), value.clone()));
        again.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if headers.len() >= MAX_HEADERS {
        // No room for the Content-Length line (a chunked answer may use all the lines).
        return;
    }
    again.extend_from_slice(format!("Content-Length: {}\r\n\r\n", resp.body.len()).as_bytes());
    again.extend_from_slice(&resp.body);
    let reparsed = parse_response(&again, usize::MAX, CAP).expect("a re-framed answer parses");
    headers.push(("content-length".into(), resp.body.len().to_string()));
    assert_eq!(reparsed.status, resp.status);
    assert_eq!(reparsed.body, resp.body);
    assert_eq!(reparsed.headers, headers);
});
