//! A node's policy: which algorithm images a data owner admits, for whom, with what evidence.
//!
//! The policy is a TOML file (`version = 1`, see `docs/policy.md` for the data owner's guide).
//! This crate reads and validates it ([`Policy::load`] does the file I/O at the edge, then hands
//! the text to the pure [`Policy::from_toml_str`]) and decides ([`decide`], a pure function of the
//! policy, the normalised reference, the manifest digest if known, the verified signer keys and
//! the requester). [`precheck`] is the early check on names and requester alone that a node runs
//! before any network I/O.
//!
//! Rules are named `allow[N]` and `deny[N]`, 1-based in file order (the first `[[allow]]` table is
//! `allow[1]`), together with their line in the file.
//!
//! Decision rules, in order:
//! 1. a policy without rules denies everything;
//! 2. a digest pinned in the reference that differs from the digest given separately denies;
//! 3. every deny rule whose stated conditions all hold denies; a deny-rule condition that cannot
//!    be evaluated (unknown digest, requester field not given) is taken as holding: fail closed;
//! 4. otherwise the first allow rule in file order whose every stated condition holds permits; a
//!    condition that cannot be evaluated fails;
//! 5. otherwise deny, listing for each allow rule that named the repository the conditions that
//!    failed.

#![forbid(unsafe_code)]

mod decide;
mod load;
mod output;
mod reproduced;
mod rule;

pub use decide::{
    Approvals, Condition, Decision, DenyReason, Failure, Precheck, Request, Requester,
    RequesterField, SignerKinds, StoreFacts, decide, decide_with, decide_with_notary, precheck,
};
pub use load::{
    FileLoadError, KeyLoadError, MAX_APPROVALS, PolicyError, SUPPORTED_VERSION, expand_glob,
};
pub use output::{
    FirstRun, Logs, MAX_CHECKERS, MAX_OUTPUT_BYTES, MAX_PATH_SEGMENTS, MAX_RUNS_PER_DAY,
    MAX_SCHEMA_BYTES, MAX_SUBTASKS, MIN_K, MinCount, OutputRules, OutputViolation, PathPattern,
    Release, Schema, Sourced,
};
pub use reproduced::{BuildAttestation, BuildFacts, Counted, ReproducedBy, TooFewBuilders};
pub use rule::{
    ApprovedBy, Contract, NotarySigners, Policy, RepositoryMatch, Rule, RuleId, RuleKind, SignedBy,
};

#[cfg(test)]
mod approved_tests;
#[cfg(test)]
mod notary_tests;
#[cfg(test)]
mod output_tests;
#[cfg(test)]
mod reproduced_tests;
#[cfg(test)]
mod tests;
