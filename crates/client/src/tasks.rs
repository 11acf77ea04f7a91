//! Listing tasks: every page of `GET /api/tasks` the account may see, with the server's filters.

use warden_api::{Page, Task};

use crate::{Client, ClientError};

/// Tasks asked for per page.
const PAGE: u32 = 100;
/// At most this many pages are read, so a server that always answers `next` cannot keep the
/// client listing forever.
const MAX_PAGES: usize = 10_000;

/// Which tasks to list (each `None` is no filter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub collaboration_id: Option<i64>,
    pub creator_user_id: Option<i64>,
    pub parent_task_id: Option<i64>,
}

impl TaskFilter {
    fn query(&self, after: Option<i64>) -> String {
        let mut q = format!("/api/tasks?limit={PAGE}");
        for (key, value) in [
            ("collaboration_id", self.collaboration_id),
            ("creator_user_id", self.creator_user_id),
            ("parent_task_id", self.parent_task_id),
            ("after", after),
        ] {
            if let Some(v) = value {
                q.push_str(&format!("&{key}={v}"));
            }
        }
        q
    }
}

impl Client {
    /// Every task the account may see that `filter` selects, newest first (the server's order), following the
    /// server's pages; a page whose cursor does not move forward is an error.
    pub async fn tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, ClientError> {
        let mut out: Vec<Task> = Vec::new();
        let mut after = None;
        for _ in 0..MAX_PAGES {
            let page: Page<Task> = self.get(&filter.query(after), "listing tasks").await?;
            out.extend(page.items);
            match page.next {
                None => return Ok(out),
                // Pages are newest first: each cursor is an id below the last one.
                Some(next) if after.is_some_and(|a| next >= a) => {
                    return Err(ClientError::Unexpected {
                        what: "listing tasks".to_owned(),
                        message: format!("the page cursor went back from {after:?} to {next}"),
                    });
                }
                Some(next) => after = Some(next),
            }
        }
        Err(ClientError::Unexpected {
            what: "listing tasks".to_owned(),
            message: format!("more than {MAX_PAGES} pages"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_only_the_filters_given() {
        assert_eq!(TaskFilter::default().query(None), "/api/tasks?limit=100");
        let f = TaskFilter {
            collaboration_id: Some(3),
            creator_user_id: None,
            parent_task_id: Some(9),
        };
        assert_eq!(
            f.query(Some(40)),
            "/api/tasks?limit=100&collaboration_id=3&parent_task_id=9&after=40"
        );
    }
}
