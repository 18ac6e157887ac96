//! The operator engine: a job's pipeline run over one source partition, as a pure state
//! machine — records in, results and dead letters out. No I/O, no clock, no threads (the
//! `cel` compiler's own aside): time is the events' time, and everything the partition
//! remembers is in [`Pipeline::snapshot`]. The PartitionActor drives it; the simulation
//! and the benchmarks drive the same code.
//!
//! This comment is the engine's specification: a reference evaluator written from it
//! alone must produce the same outputs for the same spec and records.
//!
//! Each stage kind has a file of its own, named as the job spec names it: `filter.rs`,
//! `map.rs`, `dedupe.rs` (with its memory), `key_by.rs` (and the key text `dedupe` shares),
//! `window.rs`, `aggregate.rs`. `stages.rs` takes a record through the record-at-a-time
//! stages; `plan.rs` holds what a compiled pipeline is made of (its `Plan` and its
//! partition `State`); `pipeline.rs` ties decoding, event time, the stages, windows and the
//! watermark together; `snapshot.rs` and `changes.rs` are what a checkpoint keeps.
//!
//! # Records and decoding
//!
//! Records are processed one at a time in offset order. For each record:
//! 1. **Decode.** The value must be one JSON text (RFC 8259, UTF-8, no byte-order mark,
//!    whitespace = space/tab/LF/CR, `\u` escapes forming valid UTF-16, no number beyond
//!    the double range, nesting at most [`JSON_NESTING_MAX`] = 128 levels); otherwise, or
//!    when the record has no value, it is dead-lettered `undecodable`. JSON that is not an
//!    object is dead-lettered `not_an_object`. Within an object, a repeated name: the last
//!    occurrence wins.
//! 2. **Event time.** With `source.event_time` set, the top-level field of exactly that
//!    name (no path; dots are part of the name) must be an RFC 3339 string or a JSON
//!    integer (no fraction, no exponent, fits i64) of epoch ms. RFC 3339 as read here:
//!    `YYYY-MM-DD`, then `T`, `t` or one space, then `HH:MM:SS`, optionally `.` and 1-9
//!    digits (truncated to ms), then `Z`, `z` or `±HH:MM`; year 0000-9999, a real calendar
//!    date, hour 00-23, minute and second 00-59, offset hour 00-23 and minute 00-59.
//!    Without `source.event_time`, the record's timestamp is the event time. A missing or
//!    unreadable time, or one with magnitude above [`EVENT_TIME_ABS_MAX_MS`]
//!    (8.64e15 ms), is dead-lettered `bad_event_time`.
//! 3. **Stages** run in order with the watermark `W` as it was *before* this record (see
//!    below). The first dead letter or drop ends the record's way through them.
//! 4. **Watermark.** Every record that got past step 2 (whatever the stages did with it:
//!    kept, filtered, deduplicated, dead-lettered, late) moves the partition watermark:
//!    `W = (largest event time so far) - max_out_of_orderness` (default 0). It starts
//!    undefined (no window is late, nothing is forgotten) and never decreases. When it
//!    changes, dedupe memories forget what it passed and due windows fire, after the
//!    record's own outputs.
//!
//! # Values and expressions
//!
//! Expressions are CEL (the `cel` crate, 0.15, standard library) over the *current
//! object*: each top-level field is a variable; a field that is missing is an evaluation
//! error. JSON maps to CEL as: null → null, true/false → bool, a number written without
//! fraction or exponent that fits i64 → int (so `-0` is the int 0), any other number →
//! double (the nearest), string → string, array → list, object → map with string keys.
//! For `a.b`, a top-level field literally named `a.b` wins over field `b` of field `a`
//! (CEL's qualified-name rule). Operators behave as the `cel` crate defines them — e.g.
//! there is no arithmetic across int and double (`amount * 100` fails for a double
//! `amount`), and ints compare with doubles by value. Any evaluation error is
//! dead-lettered `expression_error`.
//! Expressions whose syntax tree is deeper than [`EXPRESSION_DEPTH_MAX`] = 32 are refused
//! by validation when the job is submitted, and again when the pipeline is compiled.
//!
//! A result goes back to JSON when needed (a `map` output, a key): null, bool, int, uint,
//! finite double, string, and lists and maps (string keys only) of these; anything else
//! (bytes, timestamp, duration, NaN, ±infinity, a map with a non-string key) is an
//! `expression_error`. Objects the engine writes are compact JSON: keys of CEL maps and
//! of nested input objects in byte order without duplicates, integers as integers,
//! doubles in shortest round-trip form as serde_json writes them (`1.0`, `0.1`, `1e+20`).
//!
//! *Key text* (for `key_by` and `dedupe`): a string as it is; any other value its compact
//! JSON text as above (`7`, `2.0`, `true`, `null`, `[1,"a"]`). A key text longer than
//! [`KEY_LEN_MAX_BYTES`] = 4096 bytes is an `expression_error`. (So the string `"7"` and
//! the int `7` are the same key.)
//!
//! # Stages
//!
//! - `filter: e` — `e` must yield a bool (else `expression_error`); `false` drops the
//!   event silently.
//! - `map: {name: e, ...}` — the current object becomes a new object with exactly these
//!   fields, in name order, each the JSON value of its expression over the old object.
//! - `dedupe: {key: k, ttl}` — each dedupe stage keeps its own memory, per partition, of
//!   key text → event time `t_prev` of the last *kept* event with that key. A key is
//!   *remembered* while `t_prev + ttl > W`. An event at `t` whose key is remembered and
//!   `|t - t_prev| < ttl` is dropped silently; otherwise it is kept and `t_prev := t`.
//!   (The memory is not scoped by `key_by`.)
//! - `key_by: e` — the event's key becomes the key text of `e` (a later `key_by`
//!   replaces it).
//! - `window` + `aggregate` — see below; a job with no window is *stateless*.
//!
//! A stateless job emits, for each event that passes every stage, one output record: the
//! value is the record's original bytes unchanged if no `map` ran, else the current
//! object as compact JSON; the Kafka key is the event's key, or none without `key_by`.
//!
//! # Windows
//!
//! Windows are half-open `[start, end)` in epoch ms, aligned to epoch 0 (floor division,
//! also for negative times). Tumbling size `s`: the event at `t` belongs to
//! `start = floor(t/s)*s`, `end = start + s`. Sliding size `s`, slide `d`: to every
//! window with `start = k*d` (any integer `k`) and `start <= t < start + s`. Session gap
//! `g`: per key, an event at `t` spans `[t, t + g)`; it merges with every *open* session
//! of its key it overlaps (`start < t + g && t < end`) into one session from the
//! smallest start to the largest end; if it overlaps none, it opens `[t, t + g)`. (So two
//! events of a key merge when less than `g` apart.)
//!
//! With `L` = `allowed_lateness` (default 0), a window is *open* while `W < end + L`,
//! and *fires* — emits exactly one result and is forgotten — when the watermark changes
//! to `W >= end + L`. An event at `t` is **late**, and dead-lettered `late`, when at
//! its arrival (watermark before it) none of its windows is open: tumbling and sliding,
//! when `last_start + s + L <= W` with `last_start = floor(t/d)*d` (`d = s` for
//! tumbling); sessions, when `t + g + L <= W` and it overlaps no open session of its key.
//! Otherwise it is added to each of its windows that is open (sliding windows already
//! fired are skipped). Lateness is checked before the aggregate arguments are
//! evaluated.
//!
//! Aggregates: `count()` counts events; `sum(x)`, `min(x)`, `max(x)`, `avg(x)` evaluate
//! `x` over the current object; the value must be an int, uint or finite double, else the
//! event is dead-lettered `expression_error` and counts in no aggregate and no window.
//! Results: count is an integer. sum, min and max are integers when every input of the
//! window was an int or uint (written as the nearest double if outside i64); otherwise
//! doubles: the sum is the exact sum of all inputs (integers exactly, doubles at their
//! exact binary value) rounded once to the nearest double, ties to even (Python:
//! `float(sum(map(Fraction, xs)))`), and null if that rounding overflows; min and max
//! the extreme of all inputs converted to double, ordering doubles by IEEE total order
//! (`-0.0` below `0.0`; an exact zero sum is `0.0`). avg is a double: the sum as a double
//! (an integer sum rounded to the nearest double) divided by the count (null with a null
//! sum). None of these depend on the order events arrive in.
//!
//! A result is the object `{"key": <key text>, "window_start": start, "window_end": end,
//! <aggregate name>: value, ...}` (fields in that order, aggregates by name); its
//! Kafka key is the window's key. The results that fire on one watermark change are
//! emitted in order of (window_end, window_start, key text in byte order). Stages after
//! the aggregate then run on each result as on an event, with the window's key as its
//! key, event time `window_end - 1` and the new watermark; a result they drop is not
//! emitted, and one that fails there is dead-lettered with the coordinates of the record
//! whose watermark fired it and the result's JSON as payload.
//!
//! # Interval join (the `join` stage)
//!
//! A job `join`s its source (the *left* side: each event after the stages before the join)
//! with a second topic (`with`, the *right* side: decoded and timed as above with its own
//! `event_time` and `max_out_of_orderness`), on the key text of `left_key` (over the left
//! object) and `right_key` (over the right event). Both sides are repartitioned by that
//! key; the join runs downstream (`join.rs`, `join_downstream.rs`). With `within` = `w`,
//! `allowed_lateness` = `L`, `W_u` the event's own source partition's watermark before it
//! (as in step 4 above, per partition of its own topic) and `Wd` the least of the final
//! watermarks of every partition of *both* topics (none if any partition has no event
//! time yet):
//!
//! - a key that fails is `expression_error`; a left event with `ts + w + L <= W_u`, a
//!   right one with `ts + L <= W_u`, is dead-lettered `late` (upstream, source
//!   coordinates, original value); the others are *admitted*;
//! - each pair of admitted events, left `l` and right `r`, with equal key texts and
//!   `l.ts <= r.ts <= l.ts + w` gives exactly one result
//!   `{"left": <l's object>, "right": <r's object>}` keyed by the key text;
//! - `left_outer`: an admitted `l` with no such `r` gives `{"left": <l's object>,
//!   "right": null}` exactly when `Wd >= l.ts + w + L` (else nothing yet);
//! - an object is the record's value text as read when no `map` ran before the join on
//!   its side, else the compact JSON of the `map`'s outputs; the results do not depend on
//!   how the two sides' events interleave.
//!
//! Each buffered event is kept until `Wd >= ts + w + L`; the buffers are bounded by
//! [`JOIN_ENTRIES_PER_PARTITION_MAX`], [`JOIN_ENTRIES_PER_KEY_MAX`] and
//! [`JOIN_BYTES_PER_PARTITION_MAX`] like the state below.
//!
//! # Temporal join (`join` with `kind: temporal | temporal_left_outer`)
//!
//! The same stage, sides, keys, repartitioning and tasks as the interval join, with no
//! `within` (lateness as above with `w` = 0: a left or right event with `ts + L <= W_u`
//! is `late`). The right side is a versioned table (`temporal.rs`):
//!
//! - each admitted right event `r` is its key's version from `r.ts` on; one whose object
//!   has the member `"deleted": true` is a deletion; of several versions of one key at one
//!   time, the one with the greatest object bytes counts;
//! - an admitted left event `l` gives its result exactly when `Wr >= l.ts + L`, `Wr` the
//!   least of the final watermarks of every partition of the *right* topic (none while
//!   any has no event time): `{"left": <l's object>, "right": <v's object>}` with `v` the
//!   version of `l`'s key with the greatest `ts <= l.ts`; if there is none or `v` is a
//!   deletion, `temporal_left_outer` gives `{"left": <l's object>, "right": null}` and
//!   `temporal` nothing. Keyed by the key text, event time `l.ts`; the results do not
//!   depend on how the two sides' events interleave.
//!
//! A version is forgotten once a newer version of its key has `ts + L <= Wd`, a key whose
//! newest version is a deletion with `ts + L <= Wd` whole; the same bounds as the
//! interval join.
//!
//! # Dead letters and bounds
//!
//! A dead letter carries the reason, a human-readable detail (not a stable format), the
//! record's topic, partition and offset, and its original value; see
//! [`DeadLetter::to_json`]. Memory is bounded by [`KEYS_PER_PARTITION_MAX`],
//! [`OPEN_WINDOWS_PER_KEY_MAX`], [`OPEN_WINDOWS_PER_PARTITION_MAX`] and
//! [`DEDUPE_KEYS_MAX`]; reaching one stops the pipeline with
//! [`PipelineError::StateLimit`] instead of dropping state (see [`limits`]). A sliding
//! window whose size / slide (rounded up) exceeds [`WINDOWS_PER_EVENT_MAX`], or a dedupe
//! `ttl` over a year, is refused by validation when the job is submitted.
//!
//! # Checkpoints
//!
//! [`Pipeline::snapshot`] between two records captures the watermark, the dedupe
//! memories and the open windows with their accumulators; [`Pipeline::restore`] with the
//! same spec (same stages and event-time settings) continues exactly as if never stopped.
//! [`Pipeline::take_changes`] gives the same state as entries per key — all of them the
//! first time, afterwards only the keys kept, forgotten, or whose windows changed or fired
//! since the previous call — and [`Pipeline::restore_entries`] rebuilds the exact snapshot
//! from a header and every entry, so a worker's local copy can be kept key by key.

mod aggregate;
mod carry;
mod changes;
mod compile;
mod datum;
mod dedupe;
mod downstream;
mod event_time;
mod exact;
mod expr;
mod filter;
mod hash;
mod inspect;
mod join;
mod join_codec;
mod join_downstream;
mod join_stage;
#[cfg(test)]
mod join_stages_tests;
#[cfg(test)]
mod join_tests;
mod json;
mod key_by;
pub mod limits;
mod map;
mod object;
mod pipeline;
mod plan;
mod record;
mod redistribute;
pub mod role;
pub mod shuffled;
mod snapshot;
mod stages;
mod table_key;
mod temporal;
mod temporal_codec;
#[cfg(test)]
mod temporal_tests;
mod window;

#[cfg(test)]
mod tests;

pub use changes::{StateChanges, StateEntry, WINDOWS_SECTION};
pub use compile::CompileError;
pub use event_time::{parse_rfc3339_ms, EVENT_TIME_ABS_MAX_MS};
pub use expr::EXPRESSION_DEPTH_MAX;
pub use hash::seed_this_thread as seed_key_hash_this_thread;
pub use inspect::{DedupeEntry, KeyState};
pub use json::JSON_NESTING_MAX;
pub use limits::{
    PipelineError, StateLimit, DEDUPE_KEYS_MAX, JOIN_BYTES_PER_PARTITION_MAX,
    JOIN_ENTRIES_PER_KEY_MAX, JOIN_ENTRIES_PER_PARTITION_MAX, KEYS_PER_PARTITION_MAX,
    KEY_LEN_MAX_BYTES, OPEN_WINDOWS_PER_KEY_MAX, OPEN_WINDOWS_PER_PARTITION_MAX,
    WINDOWS_PER_EVENT_MAX,
};
pub use pipeline::Pipeline;
pub use plan::RestoreError;
pub use record::{
    DeadLetter, DeadLetterReason, OutputRecord, Outputs, SourceRecord, DEAD_LETTER_DETAIL_BYTES_MAX,
};
pub use redistribute::{KeyRange, Redistribution};
pub use role::PipelineRole;
