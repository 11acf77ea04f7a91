//! `mean`: the federated mean algorithm's entry point (see the library for its functions).

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    warden_algorithm_mean::algorithm().main()
}
