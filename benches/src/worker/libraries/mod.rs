//! The filter-map job done without the engine's hand-written JSON indexer or its native
//! expression path, built from libraries instead, so the operator bench can weigh each
//! hand-written path against what it replaces, in the same run on the same records.
//!
//! Per record each path does the engine's work for that job (see `weir_worker::operators`):
//! check the whole value is one JSON object, read the event time (`date_time`: epoch-ms
//! integer or RFC 3339, within the engine's range), evaluate `price > 100`, evaluate the
//! map's three outputs, write the output object as compact JSON in name order, and move
//! the watermark. A record that fails is dead-lettered with the engine's reason, so the
//! outputs compare record for record with the engine's ([`check_against_engine`]).
//!
//! - [`LibraryPath::SerdeRaw`]: serde_json into a struct of borrowed `&RawValue` fields;
//!   the expressions as compiled Rust (the least any expression path can cost), so the
//!   difference from the engine is the decoding.
//! - [`LibraryPath::SonicLazy`]: the same with sonic-rs's `LazyValue` fields.
//! - [`LibraryPath::CelSerdeRaw`]: serde_json's decoding as in `SerdeRaw`, the expressions
//!   by the `cel` interpreter alone, so against `SerdeRaw` the difference is the
//!   expression path.

pub mod cel_path;
pub mod decode;
pub mod field;

use anyhow::{bail, Context};
use cel_path::CelExpressions;
use decode::{DecodeFailure, RawFields};
use field::Field;
use std::collections::BTreeMap;
use weir_core::spec::{JobSpec, Stage};
use weir_worker::operators::{
    DeadLetter, DeadLetterReason, OutputRecord, Outputs, Pipeline, SourceRecord,
};

/// Which libraries do the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibraryPath {
    /// serde_json's borrowed raw values, compiled expressions.
    SerdeRaw,
    /// sonic-rs's lazy values, compiled expressions.
    SonicLazy,
    /// serde_json's borrowed raw values, the `cel` interpreter.
    CelSerdeRaw,
}

impl LibraryPath {
    /// Every path, in table order.
    pub const ALL: [LibraryPath; 3] = [
        LibraryPath::SerdeRaw,
        LibraryPath::SonicLazy,
        LibraryPath::CelSerdeRaw,
    ];

    /// The path's name in tables.
    pub fn name(self) -> &'static str {
        match self {
            LibraryPath::SerdeRaw => "filter+map: serde_json &RawValue",
            LibraryPath::SonicLazy => "filter+map: sonic-rs LazyValue",
            LibraryPath::CelSerdeRaw => "filter+map: serde_json + cel",
        }
    }

    /// A short name for `--variants`.
    pub fn flag(self) -> &'static str {
        match self {
            LibraryPath::SerdeRaw => "serde-raw",
            LibraryPath::SonicLazy => "sonic-lazy",
            LibraryPath::CelSerdeRaw => "cel-serde",
        }
    }
}

/// The filter-map job over one partition, by one [`LibraryPath`].
pub struct FilterMapByLibrary {
    path: LibraryPath,
    cel: Option<CelExpressions>,
    /// The largest event time seen: the watermark, less the job's out-of-orderness.
    max_event_ms: Option<i64>,
}

/// The stages the compiled-Rust paths implement: a change to the bench's job must show.
fn is_the_filter_map_job(spec: &JobSpec) -> bool {
    let map: BTreeMap<String, String> = ["auction", "bidder", "price"]
        .into_iter()
        .map(|name| (name.to_string(), name.to_string()))
        .collect();
    matches!(
        spec.pipeline.as_slice(),
        [Stage::Filter(filter), Stage::Map(outputs)] if filter == "price > 100" && *outputs == map
    ) && spec.source.event_time.as_deref() == Some("date_time")
}

impl FilterMapByLibrary {
    /// The job of `spec`, which must be the bench's filter-map job.
    pub fn new(path: LibraryPath, spec: &JobSpec) -> anyhow::Result<FilterMapByLibrary> {
        if !is_the_filter_map_job(spec) {
            bail!("{} implements only the bench's filter-map job", path.name());
        }
        let cel = match path {
            LibraryPath::CelSerdeRaw => Some(CelExpressions::from_spec(spec)?),
            LibraryPath::SerdeRaw | LibraryPath::SonicLazy => None,
        };
        Ok(FilterMapByLibrary {
            path,
            cel,
            max_event_ms: None,
        })
    }

    /// The largest event time seen.
    pub fn max_event_ms(&self) -> Option<i64> {
        self.max_event_ms
    }

    /// Processes records in order, appending results and dead letters to `out`.
    pub fn process_batch(&mut self, records: &[SourceRecord], out: &mut Outputs) {
        for record in records {
            self.process(record, out);
        }
    }

    fn process(&mut self, record: &SourceRecord, out: &mut Outputs) {
        let Some(value) = record.value.as_deref() else {
            let detail = "the record has no value".to_string();
            return dead_letter(out, record, DeadLetterReason::Undecodable, detail);
        };
        let decoded: Result<RawFields<'_>, DecodeFailure> = match self.path {
            LibraryPath::SerdeRaw | LibraryPath::CelSerdeRaw => decode::serde_json_fields(value),
            LibraryPath::SonicLazy => decode::sonic_fields(value),
        };
        let fields = match decoded {
            Ok(fields) => fields,
            Err((reason, detail)) => return dead_letter(out, record, reason, detail),
        };
        let event_ms = match field::event_time_ms(fields.date_time.as_deref()) {
            Ok(ms) => ms,
            Err(detail) => return dead_letter(out, record, DeadLetterReason::BadEventTime, detail),
        };
        let result = match &self.cel {
            Some(cel) => cel.run(&fields),
            None => compiled_expressions(&fields),
        };
        match result {
            Ok(Some(value)) => out.records.push(OutputRecord {
                key: None,
                value,
                source_offset: record.offset,
                route: 0,
            }),
            Ok(None) => {}
            Err(detail) => dead_letter(out, record, DeadLetterReason::ExpressionError, detail),
        }
        self.max_event_ms = Some(self.max_event_ms.map_or(event_ms, |max| max.max(event_ms)));
    }
}

/// `filter: "price > 100"` then `map: {auction, bidder, price}` as Rust.
fn compiled_expressions(fields: &RawFields<'_>) -> Result<Option<Vec<u8>>, String> {
    let load = |name: &str| -> Result<Field<'_>, String> {
        let raw = fields
            .get(name)
            .ok_or_else(|| format!("no such key: {name}"))?;
        Field::from_raw(raw)
    };
    let price = load("price")?;
    if !price.greater_than(100)? {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(16 + 32 * 3);
    out.extend_from_slice(b"{\"auction\":");
    load("auction")?.write_json(&mut out)?;
    out.extend_from_slice(b",\"bidder\":");
    load("bidder")?.write_json(&mut out)?;
    out.extend_from_slice(b",\"price\":");
    price.write_json(&mut out)?;
    out.push(b'}');
    Ok(Some(out))
}

fn dead_letter(out: &mut Outputs, record: &SourceRecord, reason: DeadLetterReason, detail: String) {
    out.dead_letters.push(DeadLetter {
        reason,
        detail,
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        payload: record.value.clone(),
    });
}

/// Runs `records` through the engine's filter-map pipeline and through `path`, and fails
/// unless both give the same results (key, value, source offset), the same dead letters
/// (reason and offset; the details are prose) and the same watermark.
pub fn check_against_engine(
    path: LibraryPath,
    spec: &JobSpec,
    records: &[SourceRecord],
) -> anyhow::Result<()> {
    let mut engine = Pipeline::compile(spec).context("the engine's filter-map job")?;
    let mut library = FilterMapByLibrary::new(path, spec)?;
    let (mut theirs, mut ours) = (Outputs::new(), Outputs::new());
    engine.process_batch(records, &mut theirs)?;
    library.process_batch(records, &mut ours);
    if let Some(at) = (0..theirs.records.len().max(ours.records.len()))
        .find(|&i| theirs.records.get(i) != ours.records.get(i))
    {
        bail!(
            "{}: result {at} differs from the engine's: {:?} against {:?}",
            path.name(),
            ours.records.get(at),
            theirs.records.get(at)
        );
    }
    let letters = |out: &Outputs| -> Vec<(DeadLetterReason, i64)> {
        out.dead_letters
            .iter()
            .map(|d| (d.reason, d.offset))
            .collect()
    };
    if letters(&ours) != letters(&theirs) {
        bail!(
            "{}: dead letters {:?} differ from the engine's {:?}",
            path.name(),
            letters(&ours),
            letters(&theirs)
        );
    }
    let watermark = library
        .max_event_ms()
        .map(|max| max - out_of_orderness_ms(spec));
    if watermark != engine.watermark_ms() {
        bail!(
            "{}: watermark {watermark:?}, the engine's {:?}",
            path.name(),
            engine.watermark_ms()
        );
    }
    Ok(())
}

fn out_of_orderness_ms(spec: &JobSpec) -> i64 {
    i64::try_from(spec.source.max_out_of_orderness_or_zero().as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
