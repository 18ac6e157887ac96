use super::*;
use crate::worker::jobs::Job;
use crate::worker::nexmark::Bids;

fn record(offset: usize, value: Option<&[u8]>) -> SourceRecord {
    SourceRecord {
        topic: "bids".to_string(),
        partition: 0,
        offset: offset as i64,
        timestamp_ms: Some(1_700_000_000_000),
        key: None,
        value: value.map(<[u8]>::to_vec),
    }
}

/// Bids as the bench generates them, then records of every kind of failure and of values
/// the bench's bids never hold.
fn records() -> Vec<SourceRecord> {
    let bids = Bids::generate(2_000, 7);
    let mut values: Vec<Option<Vec<u8>>> = bids.values.into_iter().map(Some).collect();
    let odd: &[&str] = &[
        r#"{"auction":1,"bidder":2,"price":101,"date_time":"2023-11-14T22:13:20.5Z"}"#,
        r#"{"auction":1,"bidder":2,"price":101.5,"date_time":1700000000000}"#,
        r#"{"auction":1,"bidder":2,"price":100,"date_time":1700000000000}"#,
        r#"{"auction":"a\"é\u0001","bidder":null,"price":1e3,"date_time":1700000000000}"#,
        r#"{"auction":{"z":1,"a":[1,2.50,true]},"bidder":9223372036854775808,"price":-0,"date_time":1}"#,
        r#"{"auction":{"z":1,"a":[1,2.50,true]},"bidder":9223372036854775808,"price":200,"date_time":1}"#,
        r#"{"auction":1,"bidder":2,"price":"101","date_time":1700000000000}"#,
        r#"{"auction":1,"bidder":2,"price":null,"date_time":1700000000000}"#,
        r#"{"auction":1,"bidder":2,"date_time":1700000000000}"#,
        r#"{"bidder":2,"price":500,"date_time":1700000000000}"#,
        r#"{"auction":1,"bidder":2,"price":500}"#,
        r#"{"auction":1,"bidder":2,"price":500,"date_time":1.5}"#,
        r#"{"auction":1,"bidder":2,"price":500,"date_time":"yesterday"}"#,
        r#"{"auction":1,"bidder":2,"price":500,"date_time":9000000000000000000}"#,
        r#"[1,2,3,4]"#,
        r#""a string""#,
        r#"{"auction":1,"bidder":2,"price":500,"date_time":1700000000000"#,
        r#"{"auction":1,"bidder":2,"price":500,"date_time":1700000000000} x"#,
        r#"{"auction":1,"bidder":2,"price":500,"date_time":1700000000000,"url":tru}"#,
        r#" { "auction" : 1 , "bidder" : 2 , "price" : 500 , "date_time" : 1700000000001 } "#,
    ];
    values.extend(odd.iter().map(|v| Some(v.as_bytes().to_vec())));
    values.push(None);
    values.push(Some(b"{\"auction\":1,\"url\":\"\xff\"}".to_vec()));
    values
        .iter()
        .enumerate()
        .map(|(offset, value)| record(offset, value.as_deref()))
        .collect()
}

#[test]
fn every_path_gives_the_engines_outputs() {
    let spec = Job::FilterMap.spec("bids", "out").unwrap();
    let records = records();
    for path in LibraryPath::ALL {
        check_against_engine(path, &spec, &records).unwrap();
    }
}

#[test]
fn the_odd_records_reach_every_outcome() {
    let spec = Job::FilterMap.spec("bids", "out").unwrap();
    let mut out = Outputs::new();
    Pipeline::compile(&spec)
        .unwrap()
        .process_batch(&records(), &mut out)
        .unwrap();
    let reasons: std::collections::BTreeSet<_> =
        out.dead_letters.iter().map(|d| d.reason).collect();
    for reason in [
        DeadLetterReason::Undecodable,
        DeadLetterReason::NotAnObject,
        DeadLetterReason::BadEventTime,
        DeadLetterReason::ExpressionError,
    ] {
        assert!(reasons.contains(&reason), "{reason}");
    }
    assert!(out
        .records
        .iter()
        .any(|r| r.value.starts_with(b"{\"auction\":{")));
}

#[test]
fn only_the_bench_job_is_accepted() {
    let spec = Job::WindowedCount.spec("bids", "out").unwrap();
    for path in LibraryPath::ALL {
        assert!(FilterMapByLibrary::new(path, &spec).is_err());
    }
}
