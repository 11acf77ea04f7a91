//! What accounts and tokens are made of, shared by the coordination server and the algorithm
//! store: argon2id password hashing with fixed parameters on dedicated threads ([`password`]),
//! random bearer tokens stored only as sha256 hashes ([`token`]), and per-address login token
//! buckets ([`throttle`]). The per-account lockout decision ([`lockout`]) is pure; each service
//! stores the counter in its own database.

#![forbid(unsafe_code)]

pub mod lockout;
pub mod password;
pub mod throttle;
pub mod token;
