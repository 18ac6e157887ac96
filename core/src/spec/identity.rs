//! The stable identity of a pipeline's stateful stages, by which an upgrade carries each
//! stage's state into the new version's pipeline ([`super::upgrade`]).
//!
//! A stateful stage (a `dedupe`, or a `window` with the `key_by` before it and its
//! `aggregate`) is identified by its explicit `id:`, written beside the stage, or else by
//! the default rule: its kind and its ordinal among the pipeline's stateful stages of that
//! kind, counted from 0 (`dedupe#0`, `dedupe#1`, `window#0`). Stateless stages (`filter`,
//! `map`, `key_by`) count for nothing, so adding, removing or editing one never changes
//! another stage's identity; adding a dedupe *before* another one does (its ordinal
//! shifts), which the compatibility check then reports unless the stages have ids.

use super::error::SpecError;
use super::stage::Stage;

/// The longest explicit stage id.
pub const STAGE_ID_LEN_MAX: usize = 63;

/// The kinds of stage that keep state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatefulKind {
    /// A `dedupe` stage: its memory of keys seen.
    Dedupe,
    /// A `window` stage (with its `key_by` and `aggregate`): its open windows per key.
    Window,
}

impl StatefulKind {
    /// The stage key it is written with, also the default id's prefix.
    pub const fn as_str(self) -> &'static str {
        match self {
            StatefulKind::Dedupe => "dedupe",
            StatefulKind::Window => "window",
        }
    }
}

/// One stateful stage of a pipeline and its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatefulStage<'a> {
    /// The explicit id, or the default one (`<kind>#<ordinal>`).
    pub id: String,
    /// Its index in the pipeline (`pipeline[index]`).
    pub index: usize,
    /// Its kind.
    pub kind: StatefulKind,
    /// Its ordinal among the stateful stages of its kind: for a dedupe, the index of its
    /// memory in the worker's state.
    pub ordinal: usize,
    /// The stage.
    pub stage: &'a Stage,
}

impl StatefulStage<'_> {
    /// The stage's field path, like `pipeline[3].window`, named in errors.
    pub fn field(&self) -> String {
        format!("pipeline[{}].{}", self.index, self.kind.as_str())
    }
}

/// The default id of the `ordinal`-th stateful stage of `kind`.
pub fn default_id(kind: StatefulKind, ordinal: usize) -> String {
    format!("{}#{ordinal}", kind.as_str())
}

/// The pipeline's stateful stages in pipeline order, each with its identity.
pub fn stateful_stages(pipeline: &[Stage]) -> Vec<StatefulStage<'_>> {
    let mut dedupes = 0;
    let mut windows = 0;
    let mut out = Vec::new();
    for (index, stage) in pipeline.iter().enumerate() {
        let (kind, ordinal) = if matches!(stage, Stage::Dedupe(_)) {
            dedupes += 1;
            (StatefulKind::Dedupe, dedupes - 1)
        } else if matches!(stage, Stage::Window(_)) {
            windows += 1;
            (StatefulKind::Window, windows - 1)
        } else {
            continue;
        };
        let id = match stage.explicit_id() {
            Some(id) => id.to_string(),
            None => default_id(kind, ordinal),
        };
        out.push(StatefulStage {
            id,
            index,
            kind,
            ordinal,
            stage,
        });
    }
    out
}

/// Explicit ids are `[a-z0-9_-]{1,63}` (so never a default id, which holds `#`) and
/// unique within the pipeline.
pub fn check_ids(pipeline: &[Stage]) -> Result<(), SpecError> {
    let mut seen: Vec<&str> = Vec::new();
    for (index, stage) in pipeline.iter().enumerate() {
        let Some(id) = stage.explicit_id() else {
            continue;
        };
        let field = format!("pipeline[{index}].id");
        let well_formed = !id.is_empty()
            && id.len() <= STAGE_ID_LEN_MAX
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !well_formed {
            return Err(SpecError::new(
                field,
                format!("must be 1 to {STAGE_ID_LEN_MAX} characters of a-z, 0-9, _ and -"),
            ));
        }
        if seen.contains(&id) {
            return Err(SpecError::new(
                field,
                format!("`{id}` names another stage already; ids are unique in a pipeline"),
            ));
        }
        seen.push(id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(yaml: &str) -> Vec<Stage> {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn stateless_stages_do_not_count_towards_an_identity() {
        let before = pipeline(
            "[ {dedupe: {key: id, ttl: 1h}}, {key_by: card}, {window: {tumbling: 1m}}, \
             {aggregate: {n: 'count()'}} ]",
        );
        let after = pipeline(
            "[ {filter: 'amount > 0'}, {map: {id: id, card: card}}, {dedupe: {key: id, ttl: 1h}}, \
             {key_by: card}, {window: {tumbling: 1m}}, {aggregate: {n: 'count()'}}, \
             {filter: 'n >= 5'} ]",
        );
        let ids = |p: &[Stage]| {
            stateful_stages(p)
                .into_iter()
                .map(|s| (s.id, s.kind, s.ordinal))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&before), ids(&after));
        assert_eq!(
            ids(&before),
            vec![
                ("dedupe#0".to_string(), StatefulKind::Dedupe, 0),
                ("window#0".to_string(), StatefulKind::Window, 0)
            ]
        );
        assert_eq!(stateful_stages(&after)[1].field(), "pipeline[4].window");
    }

    #[test]
    fn an_explicit_id_replaces_the_default_one() {
        let p = pipeline("[ {dedupe: {key: a, ttl: 1h}}, {dedupe: {key: b, ttl: 1h}, id: by-b} ]");
        let ids: Vec<String> = stateful_stages(&p).into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["dedupe#0", "by-b"]);
        assert_eq!(stateful_stages(&p)[1].ordinal, 1);
    }

    #[test]
    fn ids_are_well_formed_and_unique() {
        let ok = pipeline(
            "[ {dedupe: {key: a, ttl: 1h}, id: a_1}, {dedupe: {key: b, ttl: 1h}, id: b-2} ]",
        );
        assert_eq!(check_ids(&ok), Ok(()));
        let twice =
            pipeline("[ {dedupe: {key: a, ttl: 1h}, id: a}, {dedupe: {key: b, ttl: 1h}, id: a} ]");
        let err = check_ids(&twice).unwrap_err();
        assert_eq!(err.field, "pipeline[1].id");
        for bad in ["'dedupe#0'", "Upper", "''", "a b"] {
            let p = pipeline(&format!("[ {{dedupe: {{key: a, ttl: 1h}}, id: {bad}}} ]"));
            assert_eq!(check_ids(&p).unwrap_err().field, "pipeline[0].id", "{bad}");
        }
    }
}
