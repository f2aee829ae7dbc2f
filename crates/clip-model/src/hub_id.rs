//! Hugging Face hub model ids (`owner/name[@revision]`), told apart from file paths.
//!
//! Parsing needs no network; turning an id into local files is the `clip` facade's job (its
//! `hub` feature).

/// A hub model id: `owner/name`, optionally `@revision` (a branch, tag or commit; default `main`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    /// `owner/name`.
    pub repo: String,
    /// The revision.
    pub revision: String,
}

impl HubId {
    /// Parses `owner/name[@revision]`; `None` for anything that looks like a path instead: not
    /// exactly two parts, an empty part, `.` or `..`, a `.safetensors` name, or characters other
    /// than ASCII letters, digits, `-`, `_` and `.`.
    pub fn parse(spec: &str) -> Option<Self> {
        let (id, revision) = match spec.split_once('@') {
            Some((id, rev)) if !rev.is_empty() => (id, rev),
            Some(_) => return None,
            None => (spec, "main"),
        };
        let mut parts = id.split('/');
        let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            return None;
        };
        let ok = |p: &str| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        (ok(owner) && ok(name) && !name.ends_with(".safetensors")).then(|| Self {
            repo: id.to_owned(),
            revision: revision.to_owned(),
        })
    }
}

impl std::fmt::Display for HubId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.repo, self.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::HubId;

    #[test]
    fn ids_and_paths_told_apart() {
        let id = HubId::parse("timm/vit_base_patch32_clip_224.openai").unwrap();
        assert_eq!(
            (id.repo.as_str(), id.revision.as_str()),
            ("timm/vit_base_patch32_clip_224.openai", "main")
        );
        let id = HubId::parse("openai/clip-vit-base-patch32@v1.0").unwrap();
        assert_eq!(id.revision, "v1.0");
        for path in [
            "models/x.safetensors",
            "a/b/c",
            "../x",
            "./x",
            "/abs",
            "w.safetensors",
            "owner/",
            "owner/name@",
            "own er/name",
        ] {
            assert_eq!(HubId::parse(path), None, "{path}");
        }
    }
}
