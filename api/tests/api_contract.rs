//! The HTTP API of docs/HTTP_API.md against a 3-coordinator group in this process: tokens and
//! tenant isolation, spec validation, conflicts, forwarding from followers, cancellation.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

mod common;

use common::{wait_for, Group, ADMIN};
use weir_api::client::{Client, ClientError};
use weir_core::ids::JobId;
use weir_core::wire::JobState;

const SPEC: &str = include_str!("../../docs/examples/card-velocity.yaml");

fn status(e: ClientError) -> u16 {
    e.status().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_tenants_and_jobs_behave_as_the_contract_says() {
    let dir = tempfile::tempdir().unwrap();
    let group = Group::start(3, dir.path(), 3_000).await;
    group.wait_for_leader().await;
    // Talk to a follower only: every request must be forwarded to the leader.
    let admin = Client::new(vec![group.follower_addr()], Some(ADMIN.into()));

    // No token, or a wrong one: 401.
    let anonymous = Client::new(vec![group.follower_addr()], None);
    assert_eq!(
        anonymous.list_jobs().await.map_err(status).unwrap_err(),
        401
    );
    assert_eq!(
        admin
            .with_token("nope")
            .list_jobs()
            .await
            .map_err(status)
            .unwrap_err(),
        401
    );

    let acme = admin.create_tenant("acme").await.unwrap();
    let umbrella = admin.create_tenant("umbrella").await.unwrap();
    assert!(acme.token.starts_with("weir_"));
    assert_eq!(
        admin
            .create_tenant("acme")
            .await
            .map_err(status)
            .unwrap_err(),
        409
    );
    assert_eq!(
        admin
            .create_tenant("Bad Name")
            .await
            .map_err(status)
            .unwrap_err(),
        400
    );
    let acme = admin.with_token(acme.token);
    let umbrella = admin.with_token(umbrella.token);

    // A tenant cannot create tenants.
    assert_eq!(
        acme.create_tenant("x").await.map_err(status).unwrap_err(),
        403
    );

    let job = acme
        .submit_job(SPEC.as_bytes().to_vec(), None)
        .await
        .unwrap();
    assert_eq!(job.name, "card-velocity");
    assert_eq!(job.version, 1);
    // The same name again in the same tenant: 409; in another tenant: fine.
    assert_eq!(
        acme.submit_job(SPEC.as_bytes().to_vec(), None)
            .await
            .map_err(status)
            .unwrap_err(),
        409
    );
    let other = umbrella
        .submit_job(SPEC.as_bytes().to_vec(), None)
        .await
        .unwrap();

    // An invalid spec: 400 naming the field.
    let bad = SPEC.replace("tumbling: 60s", "tumbling: sixty");
    match acme.submit_job(bad.into_bytes(), None).await {
        Err(ClientError::Api {
            status: 400, field, ..
        }) => {
            assert_eq!(field.as_deref(), Some("pipeline[4].window.tumbling"))
        }
        other => panic!("expected a 400 naming the field, got {other:?}"),
    }
    let bad_cel = SPEC.replace("count >= 5", "count >= ");
    match acme.submit_job(bad_cel.into_bytes(), None).await {
        Err(ClientError::Api {
            status: 400, field, ..
        }) => assert_eq!(field.as_deref(), Some("pipeline[6].filter")),
        other => panic!("expected a 400 naming the filter, got {other:?}"),
    }

    // Isolation: each tenant sees only its own job; the other's is a 404.
    let acme_jobs = acme.list_jobs().await.unwrap();
    assert_eq!(acme_jobs.len(), 1);
    assert_eq!(acme_jobs[0].id, job.id);
    assert_eq!(
        acme.get_job(other.id).await.map_err(status).unwrap_err(),
        404
    );
    assert_eq!(
        acme.cancel_job(other.id).await.map_err(status).unwrap_err(),
        404
    );
    assert_eq!(
        acme.get_job(JobId(999)).await.map_err(status).unwrap_err(),
        404
    );
    assert_eq!(admin.list_jobs().await.unwrap().len(), 2);
    // The administrator must name the tenant when submitting.
    assert_eq!(
        admin
            .submit_job(SPEC.as_bytes().to_vec(), None)
            .await
            .map_err(status)
            .unwrap_err(),
        400
    );
    // Tenants may not see the fleet.
    assert_eq!(acme.workers().await.map_err(status).unwrap_err(), 403);

    let detail = acme.get_job(job.id).await.unwrap();
    assert_eq!(detail.state, JobState::Pending);
    assert!(detail.partitions.is_empty());

    // Cancel: 202, cancelling, then cancelled once nothing runs.
    let cancelled = acme.cancel_job(job.id).await.unwrap();
    assert!(matches!(
        cancelled.state,
        JobState::Cancelling | JobState::Cancelled
    ));
    wait_for("the job to be cancelled", 5_000, || async {
        (acme.get_job(job.id).await.ok()?.state == JobState::Cancelled).then_some(())
    })
    .await;
    // A cancelled job's name can be used again.
    acme.submit_job(SPEC.as_bytes().to_vec(), None)
        .await
        .unwrap();

    // Rotating a token retires the old one.
    let rotated = admin.rotate_tenant_token("acme").await.unwrap();
    assert_eq!(acme.list_jobs().await.map_err(status).unwrap_err(), 401);
    assert_eq!(
        admin
            .with_token(rotated.token)
            .list_jobs()
            .await
            .unwrap()
            .len(),
        2
    );

    // Cluster status from every member names the same leader.
    let leader = group.leader().unwrap();
    for addr in group.addrs() {
        let s = admin.cluster_status_of(&addr).await.unwrap();
        assert_eq!(s.members.len(), 3);
        wait_for("members to agree on the leader", 5_000, || async {
            (admin.cluster_status_of(&addr).await.ok()?.leader == Some(leader)).then_some(())
        })
        .await;
    }
    group.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_write_with_the_same_idempotency_key_is_answered_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let group = Group::start(3, dir.path(), 3_000).await;
    group.wait_for_leader().await;
    let http = reqwest::Client::new();
    let addr = group.follower_addr();
    let admin = Client::new(vec![addr.clone()], Some(ADMIN.into()));
    wait_for("the follower to know the leader", 5_000, || async {
        admin.cluster_status().await.ok()?.leader
    })
    .await;
    // Like the client, retry while leadership settles (503); keep the key across attempts.
    let post = |path: &'static str, body: Vec<u8>, key: &'static str| {
        let (http, addr) = (http.clone(), addr.clone());
        async move {
            for _ in 0..100 {
                let resp = http
                    .post(format!("http://{addr}{path}"))
                    .bearer_auth(ADMIN)
                    .header("idempotency-key", key)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                if resp.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE {
                    return Ok::<_, reqwest::Error>(resp);
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("no leader for 5 s");
        }
    };
    // Creating a tenant twice with one key: the same token both times, and it works.
    let first = post("/v1/tenants", br#"{"name":"idem"}"#.to_vec(), "k-1")
        .await
        .unwrap();
    let status = first.status();
    assert_eq!(status, 201, "{}", first.text().await.unwrap());
    let first: serde_json::Value = first.json().await.unwrap();
    let again = post("/v1/tenants", br#"{"name":"idem"}"#.to_vec(), "k-1")
        .await
        .unwrap();
    assert_eq!(again.status(), 201, "a retry is not a conflict");
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(first, again);
    let token = first["token"].as_str().unwrap().to_string();
    let tenant = Client::new(group.addrs(), Some(token));
    assert!(tenant.list_jobs().await.unwrap().is_empty());
    // Submitting a job twice with one key: one job, the same id.
    let a = post("/v1/jobs?tenant=idem", SPEC.as_bytes().to_vec(), "k-2")
        .await
        .unwrap();
    let b = post("/v1/jobs?tenant=idem", SPEC.as_bytes().to_vec(), "k-2")
        .await
        .unwrap();
    assert_eq!(
        (a.status(), b.status()),
        (reqwest::StatusCode::CREATED, reqwest::StatusCode::CREATED)
    );
    let (a, b): (serde_json::Value, serde_json::Value) =
        (a.json().await.unwrap(), b.json().await.unwrap());
    assert_eq!(a["id"], b["id"]);
    assert_eq!(tenant.list_jobs().await.unwrap().len(), 1);
    // Another key is another request: 409.
    let c = post("/v1/jobs?tenant=idem", SPEC.as_bytes().to_vec(), "k-3")
        .await
        .unwrap();
    assert_eq!(c.status(), 409);
    group.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_need_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let group = Group::start(3, dir.path(), 3_000).await;
    group.wait_for_leader().await;
    let admin = Client::new(group.addrs(), Some(ADMIN.into()));
    admin.create_tenant("m").await.unwrap();
    let http = reqwest::Client::new();
    let addr = &group.addrs()[0];
    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "weir_raft_term",
        "weir_raft_applied_index",
        "weir_raft_commit_latency_seconds",
        "weir_api_request_seconds",
        "weir_jobs",
        "weir_workers_live",
    ] {
        assert!(
            metrics.contains(name),
            "metric {name} missing from:\n{metrics}"
        );
    }
    group.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_body_is_a_400_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let group = Group::start(3, dir.path(), 3_000).await;
    group.wait_for_leader().await;
    // A first write through the retrying client: every member knows the leader after it.
    let admin = Client::new(group.addrs(), Some(ADMIN.into()));
    admin.create_tenant("first").await.unwrap();
    let http = reqwest::Client::new();
    let addr = &group.addrs()[0];
    for (body, field) in [
        ("{}", Some("name")),
        (r#"{"name": 7}"#, Some("name")),
        ("{not json", None),
        ("", None),
    ] {
        let answer = http
            .post(format!("http://{addr}/v1/tenants"))
            .bearer_auth(ADMIN)
            .header("content-type", "text/plain")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let text = answer.text().await.unwrap();
        assert_eq!(status, 400, "{body:?}: {text}");
        let error: weir_core::wire::ErrorBody = serde_json::from_str(&text).unwrap();
        assert_eq!(error.field.as_deref(), field, "{body:?}: {error:?}");
        assert!(!error.error.is_empty());
    }
    group.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoint_routes_are_tenant_scoped_and_refuse_what_cannot_be_pinned() {
    use weir_core::ids::SavepointId;
    use weir_core::wire::SavepointStatus;
    let dir = tempfile::tempdir().unwrap();
    let group = Group::start(3, dir.path(), 3_000).await;
    group.wait_for_leader().await;
    let admin = Client::new(vec![group.follower_addr()], Some(ADMIN.into()));
    let acme = admin.with_token(admin.create_tenant("acme").await.unwrap().token);
    let umbrella = admin.with_token(admin.create_tenant("umbrella").await.unwrap().token);
    let job = acme
        .submit_job(SPEC.as_bytes().to_vec(), None)
        .await
        .unwrap()
        .id;

    // No worker has counted the job's partitions: nothing to pin yet.
    let e = acme.take_savepoint(job).await.unwrap_err();
    assert_eq!(status(e), 409);
    assert!(acme.savepoints(job).await.unwrap().is_empty());
    admin
        .request::<()>(
            reqwest::Method::POST,
            &format!("/v1/jobs/{job}/partitions"),
            Some((br#"{"partition_count": 2}"#.to_vec(), "application/json")),
        )
        .await
        .unwrap();

    // A pending job that never committed: every task pinned at offset 0, empty. The job
    // re-keys, so it has two stages: a task per source partition and per repartition one.
    // (No task runs yet, so its stages are at one cut; of a running job that repartitions,
    // a savepoint is a 409 saying to pause it: the coordinator's stage-cut tests.)
    let sp = acme.take_savepoint(job).await.unwrap();
    assert_eq!(sp.savepoint, SavepointId(1));
    assert_eq!(sp.status, SavepointStatus::Complete);
    assert_eq!(sp.partitions.len(), 4);
    assert!(sp
        .partitions
        .iter()
        .all(|p| p.offset == 0 && p.snapshot.is_none()));
    assert_eq!(acme.savepoints(job).await.unwrap(), vec![sp.clone()]);

    // Another tenant's job does not exist for it.
    for e in [
        umbrella.take_savepoint(job).await.map(|_| ()).unwrap_err(),
        umbrella.savepoints(job).await.map(|_| ()).unwrap_err(),
        umbrella
            .delete_savepoint(job, SavepointId(1))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status(e), 404);
    }
    assert_eq!(
        status(acme.take_savepoint(JobId(999)).await.unwrap_err()),
        404
    );

    // A start from a savepoint needs a stopped job (409) and a savepoint that exists
    // (404); a body of the wrong kind is a 400 naming the field.
    let e = acme
        .start_job_from_savepoint(job, SavepointId(1))
        .await
        .unwrap_err();
    assert_eq!(status(e), 409);
    let e = acme
        .start_job_from_savepoint(job, SavepointId(7))
        .await
        .unwrap_err();
    assert_eq!(status(e), 404);
    match acme
        .request::<serde_json::Value>(
            reqwest::Method::POST,
            &format!("/v1/jobs/{job}/start"),
            Some((br#"{"savepoint": [1]}"#.to_vec(), "application/json")),
        )
        .await
    {
        Err(ClientError::Api {
            status: 400, field, ..
        }) => assert_eq!(field.as_deref(), Some("savepoint")),
        other => panic!("{other:?}"),
    }

    // A stop with a savepoint: pending until the job is stopped (no worker here, so it
    // is stopped at once: nothing runs and nobody can fence).
    let answer = acme.stop_job_with(job, true, false).await.unwrap();
    assert_eq!(answer.savepoint, Some(SavepointId(2)));
    wait_for("the job stopped", 10_000, || async {
        (acme.get_job(job).await.ok()?.state == JobState::Stopped).then_some(())
    })
    .await;
    let listed = acme.savepoints(job).await.unwrap();
    assert_eq!(listed[1].status, SavepointStatus::Complete);

    // Delete: 204, then 404; the list shrinks.
    acme.delete_savepoint(job, SavepointId(1)).await.unwrap();
    let e = acme
        .delete_savepoint(job, SavepointId(1))
        .await
        .unwrap_err();
    assert_eq!(status(e), 404);
    assert_eq!(acme.savepoints(job).await.unwrap().len(), 1);

    // A cancelled job takes no savepoint.
    acme.cancel_job(job).await.unwrap();
    assert_eq!(status(acme.take_savepoint(job).await.unwrap_err()), 409);
}

/// A velocity job whose source is partitioned by its key (one stage, so upgradable).
const VELOCITY: &str = r#"
name: velocity
source: { topic: payments, partitioned_by: card_id }
pipeline:
  - key_by: card_id
  - window: { tumbling: 60s }
  - aggregate: { count: "count()" }
  - filter: "count >= 5"
sink: { topic: alerts }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_routes_check_the_spec_and_are_tenant_scoped() {
    use weir_core::ids::SavepointId;
    let dir = tempfile::tempdir().unwrap();
    let group = Group::start(3, dir.path(), 3_000).await;
    group.wait_for_leader().await;
    let admin = Client::new(vec![group.follower_addr()], Some(ADMIN.into()));
    let acme = admin.with_token(admin.create_tenant("acme").await.unwrap().token);
    let umbrella = admin.with_token(admin.create_tenant("umbrella").await.unwrap().token);
    let job = acme
        .submit_job(VELOCITY.as_bytes().to_vec(), None)
        .await
        .unwrap()
        .id;
    let partitions = |job: JobId| {
        let admin = admin.clone();
        async move {
            admin
                .request::<()>(
                    reqwest::Method::POST,
                    &format!("/v1/jobs/{job}/partitions"),
                    Some((br#"{"partition_count": 2}"#.to_vec(), "application/json")),
                )
                .await
                .unwrap()
        }
    };
    partitions(job).await;
    // No worker: the stop completes at once.
    acme.stop_job(job).await.unwrap();
    wait_for("the job stopped", 10_000, || async {
        (acme.get_job(job).await.ok()?.state == JobState::Stopped).then_some(())
    })
    .await;

    // A window of another size cannot carry its state: 400 naming the stage.
    let bigger = VELOCITY.replace("tumbling: 60s", "tumbling: 120s");
    match acme.upgrade_job(job, &bigger, None, &[]).await {
        Err(ClientError::Api {
            status: 400, error, ..
        }) => assert!(
            error.contains("pipeline[1].window") && error.contains("window#0"),
            "{error}"
        ),
        other => panic!("{other:?}"),
    }
    // An invalid spec is a 400 naming its field, as at submit.
    let invalid = VELOCITY.replace("count >= 5", "count >=");
    match acme.upgrade_job(job, &invalid, None, &[]).await {
        Err(ClientError::Api {
            status: 400, field, ..
        }) => assert_eq!(field.as_deref(), Some("pipeline[3].filter")),
        other => panic!("{other:?}"),
    }
    // Another tenant's job does not exist for it; a missing savepoint is a 404.
    let threshold = VELOCITY.replace("count >= 5", "count >= 3");
    for e in [
        umbrella
            .upgrade_job(job, &threshold, None, &[])
            .await
            .map(|_| ())
            .unwrap_err(),
        umbrella.job_versions(job).await.map(|_| ()).unwrap_err(),
        acme.upgrade_job(job, &threshold, Some(SavepointId(9)), &[])
            .await
            .map(|_| ())
            .unwrap_err(),
    ] {
        assert_eq!(status(e), 404);
    }
    assert_eq!(acme.job_versions(job).await.unwrap().len(), 1);

    // The spec alone as the body, the options in the query: the window starts empty.
    let answer: weir_core::wire::UpgradeAnswer = acme
        .request(
            reqwest::Method::PUT,
            &format!("/v1/jobs/{job}?allow_state_drop=window%230"),
            Some((bigger.into_bytes(), "application/yaml")),
        )
        .await
        .unwrap();
    assert_eq!(answer.upgrade_version, 2);
    assert_eq!(answer.job.state, JobState::Pending);
    let versions = acme.job_versions(job).await.unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1].state_dropped, vec!["window#0".to_string()]);
    assert_eq!(versions[1].from_version, Some(1));
    assert_eq!(acme.get_job(job).await.unwrap().version, 2);

    // A pending job upgrades through `upgrading` (released at once: no worker here).
    let answer = acme.upgrade_job(job, VELOCITY, None, &[]).await;
    let refused = answer.unwrap_err();
    assert_eq!(
        status(refused),
        400,
        "back to 60 s without dropping the window"
    );
    let answer = acme
        .upgrade_job(job, VELOCITY, None, &["window#0".to_string()])
        .await
        .unwrap();
    assert_eq!(answer.upgrade_version, 3);
    wait_for("version 3 pending", 10_000, || async {
        let j = acme.get_job(job).await.ok()?;
        (j.version == 3 && j.state == JobState::Pending).then_some(())
    })
    .await;

    // A job that repartitions may change what follows its aggregate, not its window
    // (400 naming the pipeline), and may be rescaled; a job of one stage may not.
    let shuffling = acme
        .submit_job(SPEC.as_bytes().to_vec(), None)
        .await
        .unwrap()
        .id;
    partitions(shuffling).await;
    let e = acme
        .upgrade_job(
            shuffling,
            &SPEC.replace("tumbling: 60s", "tumbling: 30s"),
            None,
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(status(e), 400);
    let e = acme.rescale_job(job, 4).await.unwrap_err();
    assert_eq!(
        status(e),
        409,
        "velocity is partitioned by its key: one stage"
    );
    let e = acme.rescale_job(shuffling, 0).await.unwrap_err();
    assert!(e.to_string().contains("parallelism"), "{e}");
    assert_eq!(status(e), 400);
    let e = umbrella.rescale_job(shuffling, 3).await.unwrap_err();
    assert_eq!(status(e), 404, "another tenant's job is not found");
    let rescaled = acme.rescale_job(shuffling, 5).await.unwrap();
    assert_eq!(rescaled.upgrade_version, 2);
    // No task of it ever ran: nothing to drain, the rescale applies at once.
    wait_for("version 2 pending", 10_000, || async {
        let j = acme.get_job(shuffling).await.ok()?;
        (j.version == 2 && j.state == JobState::Pending).then_some(j)
    })
    .await;
    let e = acme.rescale_job(shuffling, 5).await.unwrap_err();
    assert_eq!(status(e), 409, "it runs 5 already");
    let threshold = acme
        .upgrade_job(
            shuffling,
            &SPEC.replace("count >= 5", "count >= 3"),
            None,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(threshold.upgrade_version, 3);
    wait_for("version 3 pending", 10_000, || async {
        let j = acme.get_job(shuffling).await.ok()?;
        (j.version == 3 && j.state == JobState::Pending).then_some(())
    })
    .await;
    let versions = acme.job_versions(shuffling).await.unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(
        versions[2].spec["parallelism"], 5,
        "the upgrade kept the rescaled count"
    );
    acme.cancel_job(job).await.unwrap();
    let e = acme
        .upgrade_job(job, VELOCITY, None, &[])
        .await
        .unwrap_err();
    assert_eq!(status(e), 409);
}
