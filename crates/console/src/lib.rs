//! `warden ui`: the local web console (issue 12).

#![forbid(unsafe_code)]
