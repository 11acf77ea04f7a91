//! The demo's data: one CSV file per organization, generated deterministically so that anyone
//! (and the end-to-end test) can recompute the expected mean from the files the demo writes.

/// Rows per organization.
pub const ROWS: usize = 100;

/// The column the demo averages.
pub const COLUMN: &str = "age";

/// One patient row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub id: u32,
    pub age: u32,
    pub systolic: u32,
}

/// The rows of organization number `index` (0, 1, 2, ...): distinct ids and a distinct age
/// distribution per organization, the same on every machine.
pub fn rows(index: usize) -> Vec<Row> {
    // A 64-bit linear congruential generator (Knuth's MMIX constants), seeded per organization.
    let mut state: u64 = 0x5745_5244_454e_0000 ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9);
    let mut next = move |span: u32| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % u64::from(span)) as u32
    };
    let base_age = 25 + 10 * index as u32;
    (0..ROWS)
        .map(|r| Row {
            id: (index as u32 + 1) * 1000 + r as u32,
            age: base_age + next(50),
            systolic: 100 + next(60),
        })
        .collect()
}

/// The CSV text of rows: a header `id,age,systolic_bp` and one line per row.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from("id,age,systolic_bp\n");
    for r in rows {
        out.push_str(&format!("{},{},{}\n", r.id, r.age, r.systolic));
    }
    out
}

/// The mean age over all rows of all organizations, and the row count.
pub fn direct_mean(all: &[Vec<Row>]) -> (f64, u64) {
    // Ages are small integers, so the sum is exact in f64 and equals the algorithm's sum.
    let mut sum = 0u64;
    let mut count = 0u64;
    for r in all.iter().flatten() {
        sum += u64::from(r.age);
        count += 1;
    }
    if count == 0 {
        return (f64::NAN, 0);
    }
    (sum as f64 / count as f64, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_deterministic_and_distinct_per_organization() {
        assert_eq!(rows(0), rows(0));
        assert_ne!(rows(0), rows(1));
        let a = rows(0);
        assert_eq!(a.len(), ROWS);
        assert!(a.iter().all(|r| (25..75).contains(&r.age)), "{a:?}");
        let text = csv(&a);
        assert_eq!(text.lines().count(), ROWS + 1);
        assert!(text.starts_with("id,age,systolic_bp\n1000,"));
    }

    #[test]
    fn direct_mean_of_known_rows() {
        let r = |age| Row {
            id: 1,
            age,
            systolic: 120,
        };
        let (mean, n) = direct_mean(&[vec![r(30), r(50)], vec![r(70)]]);
        assert_eq!((mean, n), (50.0, 3));
    }
}
