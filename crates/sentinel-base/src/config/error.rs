//! Typed validation errors. A section's `validate` says which field is wrong and why
//! ([`FieldError`]); the loader turns the field path into `file:line:column`.

/// A config value that failed validation: its field path and the reason.
///
/// The path is relative to the section that validated it until a parent section
/// prefixes its own name ([`FieldError::within`]); at the top it runs from the root
/// (`collectors.comfyui.timeout`), and the loader locates it in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    /// Dotted field path (`targets[0].tcp`), from the section that reported it.
    pub path: String,
    /// Why the value is refused, lowercase, without the path.
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same error seen from the enclosing section `section` (`collectors.gpu`).
    pub fn within(mut self, section: &str) -> Self {
        self.path = if self.path.is_empty() {
            section.to_string()
        } else if self.path.starts_with('[') {
            format!("{section}{}", self.path)
        } else {
            format!("{section}.{}", self.path)
        };
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_prefixes_the_section() {
        let e = FieldError::new("timeout", "must be more than 0s");
        assert_eq!(
            e.clone().within("collectors.gpu").path,
            "collectors.gpu.timeout"
        );
        assert_eq!(
            FieldError::new("[0].tcp", "x").within("targets").path,
            "targets[0].tcp"
        );
        assert_eq!(
            e.within("collectors.gpu").to_string(),
            "collectors.gpu.timeout: must be more than 0s"
        );
    }
}
