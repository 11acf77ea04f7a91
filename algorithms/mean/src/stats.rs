//! The arithmetic: compensated sums and the combination of per-organization partials.

use serde::{Deserialize, Serialize};

use crate::table::ColumnStats;

/// A Neumaier (improved Kahan) compensated sum: adding many values of mixed magnitude loses far
/// less precision than a plain `+=`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sum {
    sum: f64,
    compensation: f64,
}

impl Sum {
    pub fn add(&mut self, v: f64) {
        let t = self.sum + v;
        if self.sum.abs() >= v.abs() {
            self.compensation += (self.sum - t) + v;
        } else {
            self.compensation += (v - t) + self.sum;
        }
        self.sum = t;
    }

    pub fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// The federated mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mean {
    pub mean: f64,
    pub count: u64,
    /// How many organizations contributed.
    pub organizations: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CombineError {
    #[error("no organization had a numeric value in the column; check the column name and data")]
    NoValues,
    #[error("the combined sum overflows a 64-bit float")]
    Overflow,
    #[error("the combined count overflows")]
    CountOverflow,
}

/// Combines per-organization partials into the mean over all their values.
pub fn combine(partials: &[ColumnStats]) -> Result<Mean, CombineError> {
    let mut sum = Sum::default();
    let mut count: u64 = 0;
    for p in partials {
        sum.add(p.sum);
        count = count
            .checked_add(p.count)
            .ok_or(CombineError::CountOverflow)?;
    }
    if count == 0 {
        return Err(CombineError::NoValues);
    }
    let total = sum.value();
    if !total.is_finite() {
        return Err(CombineError::Overflow);
    }
    Ok(Mean {
        // u64 -> f64 is exact below 2^53 rows, far beyond any table.
        mean: total / count as f64,
        count,
        organizations: partials.len(),
    })
}
