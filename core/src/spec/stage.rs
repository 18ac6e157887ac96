//! The stages of a job's pipeline and their wire form. A stage is written as a one-key map,
//! `- filter: "..."`, `- window: { tumbling: 60s }`, in YAML and JSON alike. serde's derived
//! enums would write YAML tags (`!filter`) instead, and a window is "one of three kinds plus
//! an optional lateness", which no derive expresses with unknown keys still rejected; so
//! both are (de)serialized by hand here, reporting unknown keys the way derived structs do.

use super::duration::SpecDuration;
use super::join::Join;
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// One step of a job's pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// `filter: "<CEL>"`: keep the events for which the expression is true.
    Filter(String),
    /// `map: { <output>: "<CEL>", ... }`: replace each event with these fields.
    Map(BTreeMap<String, String>),
    /// `dedupe: { key, ttl }`: drop an event whose key was seen within `ttl`.
    Dedupe(Dedupe),
    /// `key_by: "<CEL>"`: partition state (windows, dedupe) by this key.
    KeyBy(String),
    /// `window: { tumbling | sliding | session, allowed_lateness? }`: group keyed events in
    /// event-time windows; always followed by an `aggregate` stage.
    Window(Window),
    /// `aggregate: { <output>: "count()" | "sum(x)" | "min(x)" | "max(x)" | "avg(x)", ... }`:
    /// fold each window into one record of these outputs.
    Aggregate(BTreeMap<String, String>),
    /// `join: { with, left_key, right_key, within, kind?, allowed_lateness? }`: an interval
    /// join of the events so far (the left side) with a second topic (`join.rs`).
    Join(Box<Join>),
}

/// The keys a stage may be written with, in pipeline order.
pub const STAGE_KINDS: &[&str] = &[
    "filter",
    "map",
    "dedupe",
    "key_by",
    "window",
    "aggregate",
    "join",
];

impl Stage {
    /// The key the stage is written with, like `filter`; also its segment in field paths.
    pub const fn kind(&self) -> &'static str {
        match self {
            Stage::Filter(_) => "filter",
            Stage::Map(_) => "map",
            Stage::Dedupe(_) => "dedupe",
            Stage::KeyBy(_) => "key_by",
            Stage::Window(_) => "window",
            Stage::Aggregate(_) => "aggregate",
            Stage::Join(_) => "join",
        }
    }

    /// The explicit `id:` written beside a stateful stage, if any.
    pub fn explicit_id(&self) -> Option<&str> {
        match self {
            Stage::Dedupe(dedupe) => dedupe.id.as_deref(),
            Stage::Window(window) => window.id.as_deref(),
            _ => None,
        }
    }
}

/// The key beside a stage's kind that gives a stateful stage its stable identity.
pub const STAGE_ID_KEY: &str = "id";

/// The settings of a `dedupe` stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dedupe {
    /// CEL expression giving each event's identity.
    pub key: String,
    /// How long a key is remembered.
    pub ttl: SpecDuration,
    /// The stage's stable identity across upgrades, written `id:` beside the stage (not
    /// inside its settings); `None` uses the default rule ([`super::identity`]).
    #[serde(skip)]
    pub id: Option<String>,
}

/// The settings of a `window` stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The window's shape.
    pub kind: WindowKind,
    /// How long after a window's end late events are still added to it; `None` means zero.
    pub allowed_lateness: Option<SpecDuration>,
    /// The stage's stable identity across upgrades, written `id:` beside the stage (not
    /// inside its settings); `None` uses the default rule ([`super::identity`]).
    pub id: Option<String>,
}

impl Window {
    /// The allowed lateness, zero when not written.
    pub fn allowed_lateness_or_zero(&self) -> SpecDuration {
        self.allowed_lateness.unwrap_or(SpecDuration::ZERO)
    }
}

/// The shape of a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowKind {
    /// `tumbling: <size>`: back-to-back windows of this size.
    Tumbling(SpecDuration),
    /// `sliding: { size, slide }`: windows of `size` starting every `slide`.
    Sliding(Sliding),
    /// `session: { gap }`: a key's window closes after `gap` without events.
    Session(Session),
}

/// The keys that select a window's shape.
const WINDOW_KINDS: &[&str] = &["tumbling", "sliding", "session"];
/// Every key a window may be written with.
const WINDOW_FIELDS: &[&str] = &["tumbling", "sliding", "session", "allowed_lateness"];

impl WindowKind {
    /// The key the shape is written with, like `tumbling`.
    pub const fn name(&self) -> &'static str {
        match self {
            WindowKind::Tumbling(_) => "tumbling",
            WindowKind::Sliding(_) => "sliding",
            WindowKind::Session(_) => "session",
        }
    }
}

/// The settings of a sliding window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sliding {
    /// Each window's length.
    pub size: SpecDuration,
    /// The distance between the starts of consecutive windows.
    pub slide: SpecDuration,
}

/// The settings of a session window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    /// The silence that closes a key's session.
    pub gap: SpecDuration,
}

impl Serialize for Stage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let id = self.explicit_id();
        let mut map = serializer.serialize_map(Some(1 + usize::from(id.is_some())))?;
        match self {
            Stage::Filter(expression) | Stage::KeyBy(expression) => {
                map.serialize_entry(self.kind(), expression)?
            }
            Stage::Map(outputs) | Stage::Aggregate(outputs) => {
                map.serialize_entry(self.kind(), outputs)?
            }
            Stage::Dedupe(dedupe) => map.serialize_entry(self.kind(), dedupe)?,
            Stage::Window(window) => map.serialize_entry(self.kind(), window)?,
            Stage::Join(join) => map.serialize_entry(self.kind(), join)?,
        }
        if let Some(id) = id {
            map.serialize_entry(STAGE_ID_KEY, id)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Stage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StageVisitor)
    }
}

struct StageVisitor;

impl<'de> Visitor<'de> for StageVisitor {
    type Value = Stage;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a stage: a map with one key, one of ")?;
        f.write_str(&STAGE_KINDS.join(", "))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Stage, A::Error> {
        let mut stage: Option<(String, Stage)> = None;
        let mut id: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == STAGE_ID_KEY {
                if id.is_some() {
                    return Err(de::Error::duplicate_field(STAGE_ID_KEY));
                }
                id = Some(map.next_value()?);
                continue;
            }
            if let Some((kind, _)) = &stage {
                return Err(de::Error::custom(format!(
                    "a stage has exactly one key besides `id`; found `{key}` after `{kind}` \
                     (start a new list item for another stage)"
                )));
            }
            let next = match key.as_str() {
                "filter" => Stage::Filter(map.next_value()?),
                "map" => Stage::Map(map.next_value()?),
                "dedupe" => Stage::Dedupe(map.next_value()?),
                "key_by" => Stage::KeyBy(map.next_value()?),
                "window" => Stage::Window(map.next_value()?),
                "aggregate" => Stage::Aggregate(map.next_value()?),
                "join" => Stage::Join(map.next_value()?),
                other => return Err(de::Error::unknown_field(other, STAGE_KINDS)),
            };
            stage = Some((key, next));
        }
        let Some((kind, mut stage)) = stage else {
            return Err(de::Error::custom(format!(
                "a stage needs one key, one of {}",
                STAGE_KINDS.join(", ")
            )));
        };
        match (&mut stage, id) {
            (_, None) => {}
            (Stage::Dedupe(dedupe), id) => dedupe.id = id,
            (Stage::Window(window), id) => window.id = id,
            (_, Some(_)) => {
                return Err(de::Error::custom(format!(
                    "`id` names a stage whose state is carried across upgrades (a dedupe or \
                     a window); a `{kind}` stage keeps no state"
                )))
            }
        }
        Ok(stage)
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = 1 + usize::from(self.allowed_lateness.is_some());
        let mut map = serializer.serialize_map(Some(len))?;
        match &self.kind {
            WindowKind::Tumbling(size) => map.serialize_entry("tumbling", size)?,
            WindowKind::Sliding(sliding) => map.serialize_entry("sliding", sliding)?,
            WindowKind::Session(session) => map.serialize_entry("session", session)?,
        }
        if let Some(lateness) = &self.allowed_lateness {
            map.serialize_entry("allowed_lateness", lateness)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(WindowVisitor)
    }
}

struct WindowVisitor;

impl<'de> Visitor<'de> for WindowVisitor {
    type Value = Window;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a window: { tumbling: <size> }, { sliding: { size, slide } } or ")?;
        f.write_str("{ session: { gap } }, with an optional allowed_lateness")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Window, A::Error> {
        let mut kind: Option<WindowKind> = None;
        let mut allowed_lateness: Option<SpecDuration> = None;
        while let Some(key) = map.next_key::<String>()? {
            let next_kind = match key.as_str() {
                "tumbling" => WindowKind::Tumbling(map.next_value()?),
                "sliding" => WindowKind::Sliding(map.next_value()?),
                "session" => WindowKind::Session(map.next_value()?),
                "allowed_lateness" if allowed_lateness.is_some() => {
                    return Err(de::Error::duplicate_field("allowed_lateness"));
                }
                "allowed_lateness" => {
                    allowed_lateness = Some(map.next_value()?);
                    continue;
                }
                other => return Err(de::Error::unknown_field(other, WINDOW_FIELDS)),
            };
            if let Some(previous) = &kind {
                return Err(de::Error::custom(format!(
                    "a window has exactly one of {}; found both `{}` and `{}`",
                    WINDOW_KINDS.join(", "),
                    previous.name(),
                    next_kind.name()
                )));
            }
            kind = Some(next_kind);
        }
        let Some(kind) = kind else {
            return Err(de::Error::custom(format!(
                "a window needs one of {}",
                WINDOW_KINDS.join(", ")
            )));
        };
        Ok(Window {
            kind,
            allowed_lateness,
            id: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml_round_trip(stage: &Stage) -> Stage {
        let text = serde_yaml::to_string(stage).unwrap();
        serde_yaml::from_str(&text).unwrap()
    }

    fn json_round_trip(stage: &Stage) -> Stage {
        let text = serde_json::to_string(stage).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn every_kind_of_stage() -> Vec<Stage> {
        let outputs: BTreeMap<String, String> =
            [("card".to_string(), "card_id".to_string())].into();
        vec![
            Stage::Filter("amount > 0".into()),
            Stage::Map(outputs.clone()),
            Stage::Dedupe(Dedupe {
                key: "event_id".into(),
                ttl: SpecDuration::from_secs(86_400),
                id: Some("seen".into()),
            }),
            Stage::KeyBy("card".into()),
            Stage::Window(Window {
                kind: WindowKind::Tumbling(SpecDuration::from_secs(60)),
                allowed_lateness: None,
                id: None,
            }),
            Stage::Window(Window {
                kind: WindowKind::Sliding(Sliding {
                    size: SpecDuration::from_secs(60),
                    slide: SpecDuration::from_secs(10),
                }),
                allowed_lateness: Some(SpecDuration::from_millis(500)),
                id: Some("velocity".into()),
            }),
            Stage::Window(Window {
                kind: WindowKind::Session(Session {
                    gap: SpecDuration::from_secs(30),
                }),
                allowed_lateness: None,
                id: None,
            }),
            Stage::Aggregate(outputs),
        ]
    }

    #[test]
    fn stages_round_trip_as_one_key_maps() {
        for stage in every_kind_of_stage() {
            assert_eq!(yaml_round_trip(&stage), stage);
            assert_eq!(json_round_trip(&stage), stage);
            let json = serde_json::to_value(&stage).unwrap();
            let object = json.as_object().unwrap();
            assert_eq!(object.len(), 1 + usize::from(stage.explicit_id().is_some()));
            assert!(object.contains_key(stage.kind()));
        }
    }

    #[test]
    fn serializes_exactly_as_the_contract_writes() {
        let stage: Stage = serde_yaml::from_str("window: { tumbling: 60s }").unwrap();
        assert_eq!(
            serde_yaml::to_string(&stage).unwrap(),
            "window:\n  tumbling: 1m\n"
        );
        let stage: Stage = serde_yaml::from_str("filter: \"count >= 5\"").unwrap();
        assert_eq!(
            serde_json::to_string(&stage).unwrap(),
            r#"{"filter":"count >= 5"}"#
        );
    }

    #[test]
    fn an_id_is_written_beside_a_stateful_stage_in_either_order() {
        for text in [
            "{ window: { tumbling: 60s }, id: velocity }",
            "{ id: velocity, window: { tumbling: 60s } }",
        ] {
            let stage: Stage = serde_yaml::from_str(text).unwrap();
            assert_eq!(stage.explicit_id(), Some("velocity"), "{text}");
        }
        let stage: Stage =
            serde_yaml::from_str("{ dedupe: { key: k, ttl: 1s }, id: seen }").unwrap();
        assert_eq!(
            serde_json::to_string(&stage).unwrap(),
            r#"{"dedupe":{"key":"k","ttl":"1s"},"id":"seen"}"#
        );
    }

    #[test]
    fn rejects_malformed_stages() {
        let cases = [
            ("flter: x", "unknown field `flter`"),
            ("{}", "a stage needs one key"),
            ("{ filter: x, key_by: y }", "exactly one key"),
            ("window: {}", "a window needs one of"),
            (
                "window: { tumbling: 1s, session: { gap: 1s } }",
                "found both",
            ),
            ("window: { tumbling: 1s, size: 1s }", "unknown field `size`"),
            ("window: { sliding: { size: 1s } }", "missing field `slide`"),
            ("dedupe: { key: x }", "missing field `ttl`"),
            (
                "dedupe: { key: x, ttl: 1s, extra: 1 }",
                "unknown field `extra`",
            ),
            ("filter", "a stage"),
            ("{ filter: x, id: a }", "keeps no state"),
            (
                "{ id: a, id: b, window: { tumbling: 1s } }",
                "duplicate field `id`",
            ),
            ("dedupe: { key: x, ttl: 1s, id: a }", "unknown field `id`"),
            ("id: a", "a stage needs one key"),
        ];
        for (text, needle) in cases {
            let err = serde_yaml::from_str::<Stage>(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
