//! The event as the stages see it: first the record's own JSON object (its fields read in
//! place), then, after a `map` stage or a window, an object of named values the engine
//! built. Expressions read fields from either the same way.

use super::datum::Datum;
use super::json::SourceDoc;

/// The current object of one event (or one window result) in the pipeline.
#[derive(Debug, Clone)]
pub(crate) enum Obj<'x> {
    /// The record's value, unchanged so far.
    Source(SourceDoc<'x>),
    /// An object the engine built, fields in output order.
    Fields(Vec<(&'x str, Datum<'x>)>),
}

impl<'x> Obj<'x> {
    /// The value of the top-level field `name`.
    pub(crate) fn get(&self, name: &str) -> Option<Datum<'x>> {
        match self {
            Obj::Source(doc) => doc.get(name).map(Datum::from_raw),
            Obj::Fields(fields) => fields
                .iter()
                .find(|(field, _)| *field == name)
                .map(|(_, value)| value.clone()),
        }
    }

    /// Appends the object as JSON: a record's value byte for byte as it came, a built
    /// object compactly with its fields in order.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Obj::Source(doc) => out.extend_from_slice(doc.text().as_bytes()),
            Obj::Fields(fields) => {
                out.push(b'{');
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    super::record::write_json_str(out, name);
                    out.push(b':');
                    value.write_json(out);
                }
                out.push(b'}');
            }
        }
    }
}
