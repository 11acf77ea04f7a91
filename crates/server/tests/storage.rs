//! Storage against whichever database `WARDEN_TEST_DATABASE_URL` names (SQLite by default).

// Test helpers outside #[test] functions: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod kit;

use warden_api::{Role, RunState};
use warden_server::storage::{
    Db, NewTask, RunFilter, StorageError, TaskFilter, TokenKind, TokenRow,
};

async fn db() -> (
    Db,
    tempfile::TempDir,
    String,
    warden_server::storage::ConnectOptions,
) {
    let dir = tempfile::tempdir().unwrap();
    let (url, opts) = kit::database_url(dir.path());
    let db = Db::connect(&url, dir.path(), &opts).await.unwrap();
    (db, dir, url, opts)
}

async fn done(db: &Db, url: &str, opts: &warden_server::storage::ConnectOptions) {
    db.close().await;
    if let Some(schema) = &opts.pg_schema {
        kit::drop_schema(url, schema).await;
    }
}

/// Organization 1 and 2 in collaboration 1, and one task with a run for each.
async fn seed(db: &Db) -> (i64, i64, i64, i64) {
    let mut tx = db.write().await.unwrap();
    let o1 = tx.insert_organization("one", "k", 1).await.unwrap();
    let o2 = tx.insert_organization("two", "k", 1).await.unwrap();
    let c = tx.insert_collaboration("c", true, 1).await.unwrap();
    tx.add_member(c, o1).await.unwrap();
    tx.add_member(c, o2).await.unwrap();
    let t = tx
        .insert_task(&NewTask {
            collaboration_id: c,
            name: "t",
            image: "docker.io/library/a:1",
            organization_id: o1,
            creator_user_id: None,
            requester_user_id: None,
            requester_username: None,
            creator_run_id: None,
            parent_task_id: None,
            nonce: None,
            created_at: 2,
        })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (o1, o2, c, t)
}

#[tokio::test]
async fn migrations_run_once_and_data_survives_a_reopen() {
    let (db, dir, url, opts) = db().await;
    seed(&db).await;
    db.close().await;
    let db = Db::connect(&url, dir.path(), &opts).await.unwrap();
    let mut tx = db.read().await.unwrap();
    assert_eq!(tx.organization(1).await.unwrap().unwrap().name, "one");
    drop(tx);
    done(&db, &url, &opts).await;
}

#[tokio::test]
async fn an_uncommitted_transaction_leaves_nothing() {
    let (db, _dir, url, opts) = db().await;
    {
        let mut tx = db.write().await.unwrap();
        tx.insert_organization("ghost", "k", 1).await.unwrap();
        // dropped without commit
    }
    let mut tx = db.read().await.unwrap();
    assert!(
        tx.list_organizations(None, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    drop(tx);
    done(&db, &url, &opts).await;
}

#[tokio::test]
async fn constraint_violations_are_typed() {
    let (db, _dir, url, opts) = db().await;
    let (o1, _, c, _) = seed(&db).await;
    let mut tx = db.write().await.unwrap();
    assert!(matches!(
        tx.insert_organization("one", "k", 1).await,
        Err(StorageError::Conflict)
    ));
    drop(tx);
    let mut tx = db.write().await.unwrap();
    assert!(matches!(
        tx.add_member(c, 999).await,
        Err(StorageError::MissingReference)
    ));
    drop(tx);
    // A node needs membership, and one per organization per collaboration.
    let mut tx = db.write().await.unwrap();
    let c2 = tx.insert_collaboration("c2", false, 1).await.unwrap();
    assert!(matches!(
        tx.insert_node(o1, c2, "h", 1).await,
        Err(StorageError::MissingReference)
    ));
    drop(tx);
    let mut tx = db.write().await.unwrap();
    tx.insert_node(o1, c, "h", 1).await.unwrap();
    assert!(matches!(
        tx.insert_node(o1, c, "h", 1).await,
        Err(StorageError::Conflict)
    ));
    drop(tx);
    // Roles and states are checked by the schema too.
    let mut tx = db.write().await.unwrap();
    assert!(
        tx.insert_user("root-with-org", Some(o1), Role::Root, "h", 1)
            .await
            .is_err()
    );
    drop(tx);
    done(&db, &url, &opts).await;
}

#[tokio::test]
async fn run_transitions_are_conditional_and_results_live_apart() {
    let (db, _dir, url, opts) = db().await;
    let (o1, o2, c, t) = seed(&db).await;
    let mut tx = db.write().await.unwrap();
    let runs = tx
        .insert_runs(t, c, &[(o1, b"in1".to_vec()), (o2, b"in2".to_vec())], 3)
        .await
        .unwrap();
    let (r1, r2) = (runs[0], runs[1]);
    tx.insert_run_events(&[(r1, c, o1), (r2, c, o2)], 3)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = db.write().await.unwrap();
    assert!(
        tx.transition_run(
            r1,
            RunState::Pending,
            RunState::Admitted,
            None,
            Some("sha256:x"),
            4
        )
        .await
        .unwrap()
    );
    // A stale "from" does not move the run.
    assert!(
        !tx.transition_run(
            r1,
            RunState::Pending,
            RunState::Rejected,
            Some("no"),
            None,
            5
        )
        .await
        .unwrap()
    );
    assert!(
        tx.transition_run(r1, RunState::Admitted, RunState::Running, None, None, 6)
            .await
            .unwrap()
    );
    tx.put_result(r1, &vec![7u8; 1 << 20], 7).await.unwrap();
    tx.put_result(r1, b"final", 8).await.unwrap();
    tx.ack_run(r1, 9).await.unwrap();
    tx.ack_run(r1, 10).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = db.read().await.unwrap();
    let run = tx.run(r1).await.unwrap().unwrap().run;
    assert_eq!(run.state, RunState::Running);
    assert_eq!(run.digest.as_deref(), Some("sha256:x"));
    assert_eq!(
        (
            run.created_at,
            run.admitted_at,
            run.started_at,
            run.acked_at
        ),
        (3, Some(4), Some(6), Some(9))
    );
    assert!(run.has_result);
    assert_eq!(tx.result(r1).await.unwrap().unwrap(), b"final");
    assert_eq!(tx.result(r2).await.unwrap(), None);
    assert_eq!(tx.run_input(r2).await.unwrap().unwrap(), b"in2");
    let f = RunFilter {
        state: Some(RunState::Pending),
        ..Default::default()
    };
    let pending = tx.list_runs(&f, None, 10).await.unwrap();
    assert_eq!(pending.iter().map(|r| r.id).collect::<Vec<_>>(), vec![r2]);
    let tf = TaskFilter {
        collaborations: Some(&[]),
        ..Default::default()
    };
    assert!(tx.list_tasks(&tf, None, 10).await.unwrap().is_empty());
    drop(tx);
    done(&db, &url, &opts).await;
}

#[tokio::test]
async fn concurrent_writers_produce_events_in_id_order() {
    let (db, _dir, url, opts) = db().await;
    let (o1, _, c, t) = seed(&db).await;
    let mut handles = Vec::new();
    for i in 0..16 {
        let db = db.clone();
        handles.push(tokio::spawn(async move {
            let mut tx = db.write().await.unwrap();
            let task = tx
                .insert_task(&NewTask {
                    collaboration_id: c,
                    name: "sub",
                    image: "docker.io/library/a:1",
                    organization_id: o1,
                    creator_user_id: None,
                    requester_user_id: None,
                    requester_username: None,
                    creator_run_id: None,
                    parent_task_id: Some(t),
                    nonce: None,
                    created_at: i,
                })
                .await
                .unwrap();
            let run = tx
                .insert_runs(task, c, &[(o1, Vec::new())], i)
                .await
                .unwrap()[0];
            tx.insert_run_events(&[(run, c, o1)], i).await.unwrap();
            tx.commit().await.unwrap();
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let mut tx = db.read().await.unwrap();
    let events = tx.events_after(c, o1, 0, 100).await.unwrap();
    assert_eq!(events.len(), 16);
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    let after = tx.events_after(c, o1, events[7].id, 100).await.unwrap();
    assert_eq!(after.len(), 8);
    assert_eq!(tx.events_after(c, 999, 0, 100).await.unwrap().len(), 0);
    drop(tx);
    done(&db, &url, &opts).await;
}

/// A task of many targets is written in a few statements (runs in one, inputs in chunks of a
/// power of two, events in one): each run still gets its own organization, input and event,
/// in the order given, for a count that is neither a power of two nor a chunk's multiple.
#[tokio::test]
async fn a_task_of_many_targets_keeps_each_target_its_run_input_and_event() {
    let (db, _dir, url, opts) = db().await;
    let (_, _, c, t) = seed(&db).await;
    let mut tx = db.write().await.unwrap();
    let mut orgs = Vec::new();
    for i in 0..301 {
        let o = tx
            .insert_organization(&format!("org-{i}"), "k", 1)
            .await
            .unwrap();
        tx.add_member(c, o).await.unwrap();
        orgs.push(o);
    }
    // Not in id order, so that the order given is what is kept, not the ids' order.
    orgs.reverse();
    orgs.swap(0, 150);
    let inputs: Vec<(i64, Vec<u8>)> = orgs
        .iter()
        .map(|&o| (o, format!("input of {o}").into_bytes()))
        .collect();
    // As a task creation writes them: the runs, their inputs and their events together.
    let (runs, drawn) = tx.insert_runs_and_events(t, c, &inputs, 5).await.unwrap();
    assert_eq!(runs.len(), orgs.len());
    assert!(
        runs.windows(2).all(|w| w[0] < w[1]),
        "run ids in the order given"
    );
    assert_eq!(drawn.len(), runs.len());
    tx.commit().await.unwrap();

    let mut tx = db.read().await.unwrap();
    let mut events = Vec::new();
    for &o in &orgs {
        let got = tx.events_after(c, o, 0, 10).await.unwrap();
        assert_eq!(got.len(), 1, "one event for organization {o}");
        events.push(got[0].id);
    }
    assert!(
        events.windows(2).all(|w| w[0] < w[1]),
        "event ids in the order given"
    );
    // Ids known before the commit (SQLite) are the committed ones; PostgreSQL draws them
    // at the commit.
    if opts.pg_schema.is_some() {
        assert!(drawn.iter().all(Option::is_none));
    } else {
        assert_eq!(drawn, events.iter().copied().map(Some).collect::<Vec<_>>());
    }
    for ((&run, &o), &event) in runs.iter().zip(&orgs).zip(&events) {
        let row = tx.run(run).await.unwrap().unwrap().run;
        assert_eq!(
            (row.task_id, row.organization_id, row.state),
            (t, o, RunState::Pending)
        );
        assert_eq!(
            tx.run_input(run).await.unwrap().unwrap(),
            format!("input of {o}").into_bytes()
        );
        let got = tx.events_after(c, o, 0, 10).await.unwrap();
        assert_eq!(
            got.iter().map(|e| (e.id, e.run_id)).collect::<Vec<_>>(),
            vec![(event, run)]
        );
    }
    drop(tx);
    // The same organization twice in one task is refused by the schema.
    let mut tx = db.write().await.unwrap();
    let t2 = tx
        .insert_task(&NewTask {
            collaboration_id: c,
            name: "t2",
            image: "docker.io/library/a:1",
            organization_id: orgs[0],
            creator_user_id: None,
            requester_user_id: None,
            requester_username: None,
            creator_run_id: None,
            parent_task_id: None,
            nonce: None,
            created_at: 6,
        })
        .await
        .unwrap();
    let twice = vec![(orgs[1], b"a".to_vec()), (orgs[1], b"b".to_vec())];
    assert!(matches!(
        tx.insert_runs(t2, c, &twice, 6).await,
        Err(StorageError::Conflict)
    ));
    drop(tx);
    done(&db, &url, &opts).await;
}

/// A task of one run for `o` in a transaction of its own, left open after its event is queued.
async fn open_creation(db: &Db, c: i64, o: i64, at: i64) -> (warden_server::storage::Tx, i64) {
    let mut tx = db.write().await.unwrap();
    let t = tx
        .insert_task(&NewTask {
            collaboration_id: c,
            name: "open",
            image: "docker.io/library/a:1",
            organization_id: o,
            creator_user_id: None,
            requester_user_id: None,
            requester_username: None,
            creator_run_id: None,
            parent_task_id: None,
            nonce: None,
            created_at: at,
        })
        .await
        .unwrap();
    let run = tx
        .insert_runs(t, c, &[(o, b"a".to_vec())], at)
        .await
        .unwrap()[0];
    tx.insert_run_events(&[(run, c, o)], at).await.unwrap();
    (tx, run)
}

/// PostgreSQL draws event ids at the commit, under the event-order lock: a transaction that
/// queued its events and has not committed (a replica stopped in between, a slow one) holds
/// no lock, so other creations commit meanwhile; the one that commits last gets the later
/// id, whichever asked first, so a node resuming "after id N" cannot miss it.
#[tokio::test]
async fn events_take_their_ids_in_commit_order_and_an_open_transaction_holds_up_no_one_on_postgres()
{
    let dir = tempfile::tempdir().unwrap();
    let (url, mut opts) = kit::database_url(dir.path());
    assert!(
        opts.pg_schema.is_some(),
        "WARDEN_TEST_DATABASE_URL must name a PostgreSQL database for this test (scripts/test sets it)"
    );
    // Longer than the guard below: a creation that waited for the open transaction fails.
    opts.pg_idle_in_transaction = std::time::Duration::from_secs(300);
    let db = Db::connect(&url, dir.path(), &opts).await.unwrap();
    let (o1, _, c, _) = seed(&db).await;
    let (first, asked_first) = open_creation(&db, c, o1, 3).await;
    let other = async {
        let (tx, run) = open_creation(&db, c, o1, 4).await;
        tx.commit().await.unwrap();
        run
    };
    let asked_second = tokio::time::timeout(std::time::Duration::from_secs(60), other)
        .await
        .expect("a creation waited for another transaction that had queued its events");
    first.commit().await.unwrap();
    let mut tx = db.read().await.unwrap();
    let events = tx.events_after(c, o1, 0, 10).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.run_id).collect::<Vec<_>>(),
        vec![asked_second, asked_first],
        "ids in commit order"
    );
    drop(tx);
    done(&db, &url, &opts).await;
}

/// A commit for more nodes than one notification holds (PostgreSQL's payloads end at 8,000
/// bytes) sends several, which name every node once between them, so other replicas still
/// wake only those nodes' sessions rather than everyone's.
#[tokio::test]
async fn a_commit_for_more_nodes_than_a_payload_holds_names_them_all_on_postgres() {
    let (db, _dir, url, opts) = db().await;
    assert!(
        opts.pg_schema.is_some(),
        "WARDEN_TEST_DATABASE_URL must name a PostgreSQL database for this test (scripts/test sets it)"
    );
    let (_, _, c, t) = seed(&db).await;
    let pool = db.pg_pool().unwrap().clone();
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .unwrap();
    let channel: String = sqlx::query_scalar(warden_server::storage::EVENT_CHANNEL_QUERY)
        .fetch_one(&mut listener)
        .await
        .unwrap();
    listener.listen(&channel).await.unwrap();
    let mut tx = db.write().await.unwrap();
    let mut inputs = Vec::new();
    for i in 0..2_000 {
        let o = tx
            .insert_organization(&format!("member-{i}"), "k", 1)
            .await
            .unwrap();
        tx.add_member(c, o).await.unwrap();
        inputs.push((o, Vec::new()));
    }
    tx.insert_runs_and_events(t, c, &inputs, 5).await.unwrap();
    tx.commit().await.unwrap();
    let mut want: Vec<(i64, i64)> = inputs.iter().map(|(o, _)| (c, *o)).collect();
    want.sort_unstable();
    let mut named = Vec::new();
    let mut notifications = 0;
    while named.len() < want.len() {
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), listener.recv())
            .await
            .expect("the commit's notifications did not all arrive")
            .unwrap();
        assert!(n.payload().len() <= 8_000);
        match warden_server::events::Wake::from_notification(n.payload()) {
            warden_server::events::Wake::Nodes(nodes) => named.extend(nodes),
            other => panic!("notification {:?} read as {other:?}", n.payload()),
        }
        notifications += 1;
    }
    assert!(notifications > 1, "{notifications} notification(s)");
    named.sort_unstable();
    assert_eq!(named, want);
    drop(listener);
    done(&db, &url, &opts).await;
}

/// A transaction left idle (a replica stopped before its commit) is ended by PostgreSQL after
/// `pg_idle_in_transaction`, whole: its runs and its queued events are gone, and the
/// connection and row locks it held are free.
#[tokio::test]
async fn a_transaction_left_idle_is_ended_whole_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut opts) = kit::database_url(dir.path());
    assert!(
        opts.pg_schema.is_some(),
        "WARDEN_TEST_DATABASE_URL must name a PostgreSQL database for this test (scripts/test sets it)"
    );
    opts.pg_idle_in_transaction = std::time::Duration::from_millis(200);
    let db = Db::connect(&url, dir.path(), &opts).await.unwrap();
    let (o1, _, c, _) = seed(&db).await;
    let (hung, run) = open_creation(&db, c, o1, 3).await;
    // Ten times the timeout: PostgreSQL ends the session meanwhile.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        hung.commit().await.is_err(),
        "the idle transaction was ended"
    );
    let mut tx = db.read().await.unwrap();
    assert!(tx.run(run).await.unwrap().is_none());
    assert!(tx.events_after(c, o1, 0, 10).await.unwrap().is_empty());
    drop(tx);
    done(&db, &url, &opts).await;
}

/// A node's session reads "after the last id it sent". Writers that commit in another order
/// than they asked for their events (each waits a while between the two) race a reader that
/// tails the events that way: the reader misses none, and sees each once, in id order.
#[tokio::test]
async fn a_reader_tailing_the_events_misses_none_while_commits_race() {
    const WRITERS: i64 = 8;
    const EACH: i64 = 25;
    let (db, _dir, url, opts) = db().await;
    let (o1, _, c, _) = seed(&db).await;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let db = db.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..EACH {
                let (tx, _) = open_creation(&db, c, o1, w * EACH + i).await;
                // 0 to 3 ms, a different pattern per writer.
                let wait = ((w * 7 + i * 3) % 4) as u64;
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                tx.commit().await.unwrap();
            }
        }));
    }
    let mut seen = Vec::new();
    let mut cursor = 0;
    let mut reads = 0u32;
    loop {
        let finished = writers.iter().all(|h| h.is_finished());
        let mut tx = db.read().await.unwrap();
        let got = tx.events_after(c, o1, cursor, 1000).await.unwrap();
        drop(tx);
        reads += 1;
        for e in &got {
            assert!(e.id > cursor, "event {} after cursor {cursor}", e.id);
            cursor = e.id;
            seen.push(e.id);
        }
        if finished {
            break;
        }
        tokio::task::yield_now().await;
    }
    for h in writers {
        h.await.unwrap();
    }
    let mut tx = db.read().await.unwrap();
    let all: Vec<i64> = tx
        .events_after(c, o1, 0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    drop(tx);
    assert_eq!(all.len() as i64, WRITERS * EACH);
    assert!(reads > 1, "the reader tailed while the writers ran");
    assert_eq!(
        seen, all,
        "the tailing reader saw every committed event once"
    );
    done(&db, &url, &opts).await;
}

/// What a request reads first, each in one statement: a token with its user and the user's
/// organization's current collaborations (none for a root, no user for a node's token), and
/// a collaboration with which of some organizations are its current members.
#[tokio::test]
async fn a_token_comes_with_its_user_and_a_collaboration_with_its_members_among_some() {
    let (db, _dir, url, opts) = db().await;
    let (o1, o2, c, _) = seed(&db).await;
    let mut tx = db.write().await.unwrap();
    let c2 = tx.insert_collaboration("c2", false, 1).await.unwrap();
    let c3 = tx.insert_collaboration("c3", false, 1).await.unwrap();
    tx.add_member(c3, o1).await.unwrap();
    tx.add_member(c2, o1).await.unwrap();
    tx.add_member(c2, o2).await.unwrap();
    assert!(tx.remove_member(c2, o1, 5).await.unwrap());
    let rita = tx
        .insert_user("rita", Some(o1), Role::Researcher, "h", 1)
        .await
        .unwrap();
    let root = tx
        .insert_user("root", None, Role::Root, "h", 1)
        .await
        .unwrap();
    let node = tx.insert_node(o2, c, "k", 1).await.unwrap();
    let token = |hash: &str, kind, user_id, node_id| TokenRow {
        hash: hash.repeat(32),
        kind,
        user_id,
        node_id,
        run_id: None,
        family: None,
        consumed: false,
        expires_at: 10,
        generation: 3,
    };
    let rows = [
        token("aa", TokenKind::Access, Some(rita), None),
        token("bb", TokenKind::Access, Some(root), None),
        token("cc", TokenKind::Node, None, Some(node)),
    ];
    for r in &rows {
        tx.insert_token(r).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = db.read().await.unwrap();
    let (t, user) = tx.token_and_user(&rows[0].hash).await.unwrap().unwrap();
    assert_eq!(t, rows[0]);
    let (user, collaborations) = user.unwrap();
    assert_eq!(user, tx.user(rita).await.unwrap().unwrap());
    // c2 no longer (removed), c and c3 ascending.
    let mut want = vec![c, c3];
    want.sort_unstable();
    assert_eq!(collaborations, want);
    let (_, user) = tx.token_and_user(&rows[1].hash).await.unwrap().unwrap();
    let (user, collaborations) = user.unwrap();
    assert_eq!((user.id, collaborations), (root, vec![]));
    let (t, user) = tx.token_and_user(&rows[2].hash).await.unwrap().unwrap();
    assert_eq!((t.node_id, user), (Some(node), None));
    assert_eq!(tx.token_and_user(&"dd".repeat(32)).await.unwrap(), None);

    let (collab, members) = tx
        .collaboration_and_members_among(c2, &[o2, 999, o1])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (collab.id, collab.name.as_str(), collab.encrypted),
        (c2, "c2", false)
    );
    assert_eq!(
        members,
        vec![o2],
        "a removed member and an unknown one are not members"
    );
    let (_, members) = tx
        .collaboration_and_members_among(c, &[o2, o1])
        .await
        .unwrap()
        .unwrap();
    let mut both = vec![o1, o2];
    both.sort_unstable();
    assert_eq!(members, both);
    let (_, members) = tx
        .collaboration_and_members_among(c, &[])
        .await
        .unwrap()
        .unwrap();
    assert!(members.is_empty());
    assert!(
        tx.collaboration_and_members_among(9999, &[o1])
            .await
            .unwrap()
            .is_none()
    );
    drop(tx);
    done(&db, &url, &opts).await;
}

#[tokio::test]
async fn refresh_tokens_are_consumed_once() {
    let (db, _dir, url, opts) = db().await;
    let mut tx = db.write().await.unwrap();
    let u = tx
        .insert_user("admin", None, Role::Root, "h", 1)
        .await
        .unwrap();
    let row = TokenRow {
        hash: "ab".repeat(32),
        kind: TokenKind::Refresh,
        user_id: Some(u),
        node_id: None,
        run_id: None,
        family: Some("fam".into()),
        consumed: false,
        expires_at: 10,
        generation: 0,
    };
    tx.insert_token(&row).await.unwrap();
    assert!(tx.consume_token(&row.hash).await.unwrap());
    assert!(!tx.consume_token(&row.hash).await.unwrap());
    assert_eq!(tx.delete_expired_tokens(11).await.unwrap(), 1);
    assert_eq!(tx.token(&row.hash).await.unwrap(), None);
    tx.commit().await.unwrap();
    // Login failure accounting locks at the threshold and restarts the counter.
    let mut tx = db.write().await.unwrap();
    for _ in 0..3 {
        tx.record_login_failure(u, 3, 99).await.unwrap();
    }
    let user = tx.user(u).await.unwrap().unwrap();
    assert_eq!((user.failed_logins, user.locked_until), (0, Some(99)));
    tx.reset_login_failures(u).await.unwrap();
    assert_eq!(tx.user(u).await.unwrap().unwrap().locked_until, None);
    tx.commit().await.unwrap();
    done(&db, &url, &opts).await;
}

/// Tasks stored before migration 0002 get their requesting user filled in by it: the creator,
/// or for subtasks (at any depth) the root task's creator.
#[tokio::test]
async fn the_requester_migration_fills_in_tasks_created_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (url, opts) = kit::database_url(dir.path());
    let seed = [
        "INSERT INTO organizations (id, name, public_key, created_at) VALUES (1, 'o', 'k', 1)",
        "INSERT INTO collaborations (id, name, encrypted, created_at) VALUES (1, 'c', TRUE, 1)",
        "INSERT INTO users (id, username, organization_id, role, password_hash, created_at) \
         VALUES (7, 'rita', 1, 'researcher', 'x', 1)",
        // 1 root by rita, 2 its subtask, 3 a subtask of 2, 4 a task of nobody known
        "INSERT INTO tasks (id, collaboration_id, name, image, organization_id, creator_user_id, \
         creator_run_id, parent_task_id, created_at) VALUES \
         (1, 1, 'root', 'i', 1, 7, NULL, NULL, 1), \
         (2, 1, 'sub', 'i', 1, NULL, 11, 1, 2), \
         (3, 1, 'subsub', 'i', 1, NULL, 12, 2, 3), \
         (4, 1, 'orphan', 'i', 1, NULL, 13, NULL, 4)",
    ];
    kit::old_database(&url, &opts, 1, &seed).await;

    let db = Db::connect(&url, dir.path(), &opts).await.unwrap();
    let mut tx = db.read().await.unwrap();
    for (id, user, name) in [
        (1, Some(7), Some("rita")),
        (2, Some(7), Some("rita")),
        (3, Some(7), Some("rita")),
        (4, None, None),
    ] {
        let t = tx.task(id).await.unwrap().unwrap();
        assert_eq!(t.requester_user_id, user, "task {id}");
        assert_eq!(t.creator_username.as_deref(), name, "task {id}");
    }
    let listed = tx
        .list_tasks(&TaskFilter::default(), None, 10)
        .await
        .unwrap();
    let names: Vec<_> = listed
        .iter()
        .map(|t| (t.id, t.creator_username.as_deref()))
        .collect();
    assert_eq!(
        names,
        vec![
            (4, None),
            (3, Some("rita")),
            (2, Some("rita")),
            (1, Some("rita"))
        ]
    );
    drop(tx);
    done(&db, &url, &opts).await;
}

/// A database from before migration 0003 keeps its users enabled and its tokens valid: every
/// owner and every token starts at generation 0.
#[tokio::test]
async fn the_access_migration_keeps_existing_accounts_and_tokens_working() {
    let dir = tempfile::tempdir().unwrap();
    let (url, opts) = kit::database_url(dir.path());
    let seed = [
        "INSERT INTO organizations (id, name, public_key, created_at) VALUES (1, 'o', 'k', 1)",
        "INSERT INTO collaborations (id, name, encrypted, created_at) VALUES (1, 'c', TRUE, 1)",
        "INSERT INTO collaboration_members (collaboration_id, organization_id) VALUES (1, 1)",
        "INSERT INTO users (id, username, organization_id, role, password_hash, created_at) \
         VALUES (7, 'rita', 1, 'researcher', 'x', 1)",
        "INSERT INTO nodes (id, organization_id, collaboration_id, api_key_hash, created_at) \
         VALUES (3, 1, 1, 'h', 1)",
        "INSERT INTO tokens (hash, kind, user_id, family, expires_at) \
         VALUES ('user-token', 'access', 7, 'f', 99)",
        "INSERT INTO tokens (hash, kind, node_id, expires_at) VALUES ('node-token', 'node', 3, 99)",
    ];
    kit::old_database(&url, &opts, 2, &seed).await;

    let db = Db::connect(&url, dir.path(), &opts).await.unwrap();
    let mut tx = db.write().await.unwrap();
    let user = tx.user(7).await.unwrap().unwrap();
    assert!(!user.disabled);
    assert_eq!(user.token_generation, 0);
    assert_eq!(tx.node(3).await.unwrap().unwrap().key_generation, 0);
    assert_eq!(tx.token("user-token").await.unwrap().unwrap().generation, 0);
    assert_eq!(tx.token("node-token").await.unwrap().unwrap().generation, 0);

    // Revocation moves the owner's generation and deletes its tokens.
    assert!(tx.set_user_disabled(7, true).await.unwrap());
    let user = tx.user(7).await.unwrap().unwrap();
    assert!(user.disabled);
    assert_eq!(user.token_generation, 1);
    assert!(tx.set_user_disabled(7, false).await.unwrap());
    assert_eq!(tx.user(7).await.unwrap().unwrap().token_generation, 1);
    assert!(!tx.set_user_disabled(999, true).await.unwrap());
    assert_eq!(tx.delete_user_tokens(7).await.unwrap(), 1);
    assert_eq!(tx.token("user-token").await.unwrap(), None);
    assert_eq!(tx.rotate_node_key(3, "h2").await.unwrap(), Some(1));
    assert_eq!(tx.node(3).await.unwrap().unwrap().api_key_hash, "h2");
    assert_eq!(tx.rotate_node_key(999, "h2").await.unwrap(), None);
    assert_eq!(tx.delete_node_tokens(3).await.unwrap(), 1);
    assert_eq!(tx.token("node-token").await.unwrap(), None);
    tx.commit().await.unwrap();
    done(&db, &url, &opts).await;
}

/// A password change conditioned on the generation fails when someone revoked the user's
/// tokens meanwhile; it clears the lockout and moves the generation.
#[tokio::test]
async fn password_changes_are_conditional_on_the_token_generation() {
    let (db, _dir, url, opts) = db().await;
    let mut tx = db.write().await.unwrap();
    let u = tx
        .insert_user("rita", None, Role::Root, "old", 1)
        .await
        .unwrap();
    for _ in 0..2 {
        tx.record_login_failure(u, 2, 99).await.unwrap();
    }
    assert_eq!(tx.user(u).await.unwrap().unwrap().locked_until, Some(99));
    assert_eq!(tx.set_password(u, "new", Some(0)).await.unwrap(), Some(1));
    let user = tx.user(u).await.unwrap().unwrap();
    assert_eq!(
        (
            user.password_hash.as_str(),
            user.locked_until,
            user.token_generation
        ),
        ("new", None, 1)
    );
    assert_eq!(tx.set_password(u, "newer", Some(0)).await.unwrap(), None);
    assert_eq!(tx.user(u).await.unwrap().unwrap().password_hash, "new");
    assert_eq!(tx.set_password(u, "newer", None).await.unwrap(), Some(2));
    assert_eq!(tx.set_password(999, "x", None).await.unwrap(), None);
    // The last enabled root.
    assert_eq!(tx.count_enabled_roots_except(u).await.unwrap(), 0);
    let other = tx
        .insert_user("root2", None, Role::Root, "h", 1)
        .await
        .unwrap();
    assert_eq!(tx.count_enabled_roots_except(u).await.unwrap(), 1);
    tx.set_user_disabled(other, true).await.unwrap();
    assert_eq!(tx.count_enabled_roots_except(u).await.unwrap(), 0);
    tx.lock_accounts().await.unwrap();
    tx.commit().await.unwrap();
    done(&db, &url, &opts).await;
}

/// Every task filter, with keyset pagination, is one range scan of an index on (column, id);
/// `creator_user_id`, `organization_id` and `image` got theirs in migration 0004.
#[tokio::test]
async fn every_task_filter_is_an_index_range_scan() {
    use warden_server::storage::Tx;
    let (db, _dir, url, opts) = db().await;
    seed(&db).await;
    let mut tx = db.write().await.unwrap();
    for (column, value, index) in [
        ("collaboration_id", "1", "tasks_by_collaboration"),
        ("parent_task_id", "1", "tasks_by_parent"),
        ("creator_user_id", "1", "tasks_by_creator_user"),
        ("organization_id", "1", "tasks_by_organization"),
        ("image", "'docker.io/library/a:1'", "tasks_by_image"),
    ] {
        let q = format!(
            "SELECT id FROM tasks WHERE {column} = {value} AND id < 1000 ORDER BY id DESC LIMIT 51"
        );
        let plan = match &mut tx {
            Tx::Sqlite(t) => {
                let rows: Vec<(i64, i64, i64, String)> =
                    sqlx::query_as(&format!("EXPLAIN QUERY PLAN {q}"))
                        .fetch_all(&mut **t)
                        .await
                        .unwrap();
                rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
            }
            Tx::Postgres(t) => {
                // The test table is tiny; forbid the sequential scan to see the index choice.
                sqlx::query("SET LOCAL enable_seqscan = off")
                    .execute(&mut **t)
                    .await
                    .unwrap();
                let rows: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {q}"))
                    .fetch_all(&mut **t)
                    .await
                    .unwrap();
                rows.join("\n")
            }
        };
        assert!(plan.contains(index), "{column}: {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{column} sorts: {plan}");
    }
    drop(tx);
    done(&db, &url, &opts).await;
}

/// Tasks stored before migration 0005 have no nonce; after it, a nonce is unique within its
/// collaboration only, and any number of tasks may have none.
#[tokio::test]
async fn the_nonce_migration_keeps_older_tasks_and_makes_nonces_unique_per_collaboration() {
    let dir = tempfile::tempdir().unwrap();
    let (url, opts) = kit::database_url(dir.path());
    let seed = [
        "INSERT INTO organizations (id, name, public_key, created_at) VALUES (1, 'o', 'k', 1)",
        "INSERT INTO collaborations (id, name, encrypted, created_at) VALUES \
         (1, 'c', TRUE, 1), (2, 'd', TRUE, 1)",
        "INSERT INTO tasks (id, collaboration_id, name, image, organization_id, created_at) \
         VALUES (101, 1, 'old', 'i', 1, 1), (102, 1, 'older', 'i', 1, 1)",
    ];
    kit::old_database(&url, &opts, 4, &seed).await;

    let db = Db::connect(&url, dir.path(), &opts).await.unwrap();
    let mut tx = db.write().await.unwrap();
    // (Ids well above the ones inserted below: PostgreSQL's sequence does not move for them.)
    for id in [101, 102] {
        assert_eq!(tx.task(id).await.unwrap().unwrap().nonce, None, "task {id}");
    }
    let nonce = "n".repeat(32);
    let task = |collaboration_id, nonce| NewTask {
        collaboration_id,
        name: "t",
        image: "i",
        organization_id: 1,
        creator_user_id: None,
        requester_user_id: None,
        requester_username: None,
        creator_run_id: None,
        parent_task_id: None,
        nonce,
        created_at: 2,
    };
    let first = tx.insert_task(&task(1, Some(&nonce))).await.unwrap();
    tx.insert_task(&task(1, None)).await.unwrap();
    tx.insert_task(&task(2, Some(&nonce))).await.unwrap();
    tx.commit().await.unwrap();
    let got = db.read().await.unwrap().task(first).await.unwrap().unwrap();
    assert_eq!(got.nonce.as_deref(), Some(nonce.as_str()));
    let mut tx = db.write().await.unwrap();
    assert!(matches!(
        tx.insert_task(&task(1, Some(&nonce))).await,
        Err(StorageError::Conflict)
    ));
    drop(tx);
    let listed = db
        .read()
        .await
        .unwrap()
        .list_tasks(&TaskFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 5);
    assert_eq!(
        listed.iter().filter(|t| t.nonce.is_some()).count(),
        2,
        "{listed:?}"
    );
    done(&db, &url, &opts).await;
}

/// The SQLite file and its WAL hold password and token hashes and every ciphertext: a new
/// database is readable by its owner only, and an existing one that others could read is
/// restricted at the next start. (SQLite itself, whatever `WARDEN_TEST_DATABASE_URL` says.)
#[tokio::test]
async fn the_sqlite_database_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.db");
    let url = format!("sqlite://{}", path.display());
    let opts = warden_server::storage::ConnectOptions::default();
    let db = Db::connect(&url, dir.path(), &opts).await.unwrap();
    seed(&db).await;
    let wal = dir.path().join("server.db-wal");
    assert!(wal.exists(), "the write went to the WAL");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&wal), 0o600);
    assert_eq!(mode(&dir.path().join("server.db-shm")), 0o600);
    db.close().await;

    // A database left readable by everyone (as earlier versions made it) is restricted.
    for p in [&path, &wal] {
        if p.exists() {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let db = Db::connect(&url, dir.path(), &opts).await.unwrap();
    assert_eq!(mode(&path), 0o640);
    db.close().await;
}
