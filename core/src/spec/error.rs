//! The one error type of spec handling. Every rejection names the field at fault with a
//! path like `pipeline[2].window.tumbling`, so the HTTP API can answer
//! `400 {"error", "field"}` and the CLI can point the user at the line to fix.

/// A job spec that was rejected: the field at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// Path to the field, like `source.topic`, `pipeline[2].window.tumbling` or
    /// `pipeline[1].map.card`; `spec` when the body as a whole is at fault.
    pub field: String,
    /// What is wrong, as one sentence without the field.
    pub message: String,
}

impl SpecError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_field_then_message() {
        let err = SpecError::new("source.topic", "must not be empty");
        assert_eq!(err.to_string(), "source.topic: must not be empty");
    }
}
