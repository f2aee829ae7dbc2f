//! Class names and prompt templates.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Largest templates file read: 1 MiB (OpenAI's 80 templates take 3 KB).
pub const MAX_TEMPLATES_FILE_BYTES: u64 = 1 << 20;

/// OpenAI's curated ImageNet class names and 80 templates (see `data/README.md`).
const OPENAI_JSON: &str = include_str!("../data/openai_imagenet_classes_templates.json");

#[derive(Deserialize)]
struct OpenAiFile {
    classes: Vec<String>,
    templates: Vec<String>,
}

fn openai() -> Result<OpenAiFile> {
    serde_json::from_str(OPENAI_JSON).map_err(|e| Error::Json {
        path: "clip-eval/data/openai_imagenet_classes_templates.json".into(),
        message: e.to_string(),
    })
}

/// Chinese-CLIP's (cn_clip's) 1000 Chinese ImageNet class names and 80 templates (see
/// `data/README.md`).
const CN_CLIP_JSON: &str = include_str!("../data/cn_clip_imagenet_classes_templates.json");

fn cn_clip() -> Result<OpenAiFile> {
    serde_json::from_str(CN_CLIP_JSON).map_err(|e| Error::Json {
        path: "clip-eval/data/cn_clip_imagenet_classes_templates.json".into(),
        message: e.to_string(),
    })
}

/// A named list of class names (index = class index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassNames {
    /// The set's name as recorded in reports (`openai`, `devkit`, or the caller's).
    pub set: String,
    /// The names.
    pub names: Vec<String>,
}

impl ClassNames {
    /// A set from any names; errors on an empty list or an empty name.
    ///
    /// For the ImageNet devkit's names use
    /// `ClassNames::new("devkit", meta.devkit_class_names())` with `imagenet_meta::Meta`: this
    /// crate takes plain name lists and does not depend on the devkit reader.
    pub fn new(set: impl Into<String>, names: Vec<String>) -> Result<Self> {
        if names.is_empty() {
            return Err(Error::ClassNames("the list is empty".into()));
        }
        if let Some(i) = names.iter().position(|n| n.trim().is_empty()) {
            return Err(Error::ClassNames(format!("name {i} is empty")));
        }
        Ok(ClassNames {
            set: set.into(),
            names,
        })
    }

    /// OpenAI's 1000 curated ImageNet names in sorted-wnid order (set `openai`).
    pub fn openai() -> Result<Self> {
        Self::new("openai", openai()?.classes)
    }

    /// cn_clip's 1000 Chinese ImageNet names in the same class order (set `zh`), as the
    /// Chinese-CLIP authors evaluate (`cn_clip/eval/imagenet_zeroshot_templates.py`; "太阳镜",
    /// sunglasses, appears twice).
    pub fn cn_clip() -> Result<Self> {
        Self::new("zh", cn_clip()?.classes)
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no names (never true for a constructed set).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// A named list of prompt templates, each containing `{}` where the class name goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    /// The set's name as recorded in reports (`openai80`, `single`, or a file path).
    pub set: String,
    /// The templates.
    pub templates: Vec<String>,
}

impl Templates {
    /// A set from any templates; each must contain `{}`.
    pub fn new(set: impl Into<String>, templates: Vec<String>) -> Result<Self> {
        if templates.is_empty() {
            return Err(Error::Templates("the list is empty".into()));
        }
        if let Some((i, t)) = templates
            .iter()
            .enumerate()
            .find(|(_, t)| !t.contains("{}"))
        {
            return Err(Error::Templates(format!(
                "template {} ({t:?}) has no {{}} placeholder",
                i + 1
            )));
        }
        Ok(Templates {
            set: set.into(),
            templates,
        })
    }

    /// OpenAI's 80 ImageNet templates (set `openai80`).
    pub fn openai80() -> Result<Self> {
        Self::new("openai80", openai()?.templates)
    }

    /// cn_clip's 80 Chinese ImageNet templates (set `zh80`), OpenAI's templates translated
    /// (`{}的照片。`, …).
    pub fn cn_clip80() -> Result<Self> {
        Self::new("zh80", cn_clip()?.templates)
    }

    /// The single template `a photo of a {}.` (set `single`).
    pub fn single() -> Self {
        Templates {
            set: "single".into(),
            templates: vec!["a photo of a {}.".into()],
        }
    }

    /// cn_clip's first Chinese template alone, `{}的照片。` ("a photo of {}"; set `zh-single`):
    /// the one-template choice for Chinese-CLIP.
    pub fn zh_single() -> Self {
        Templates {
            set: "zh-single".into(),
            templates: vec!["{}的照片。".into()],
        }
    }

    /// Reads templates from a file: a JSON array of strings, a JSON object with a `templates`
    /// array, or plain text with one template per non-empty line. The set is named by the path.
    /// Only a regular file of at most [`MAX_TEMPLATES_FILE_BYTES`] is read ([`Error::File`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = safe_file::read_to_string(path, MAX_TEMPLATES_FILE_BYTES)?;
        let trimmed = text.trim_start();
        let templates = if trimmed.starts_with('[') || trimmed.starts_with('{') {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum File {
                List(Vec<String>),
                Object { templates: Vec<String> },
            }
            match serde_json::from_str::<File>(&text) {
                Ok(File::List(t)) | Ok(File::Object { templates: t }) => t,
                Err(e) => {
                    return Err(Error::Json {
                        path: path.to_path_buf(),
                        message: format!(
                            "expected a JSON array of strings or an object with \"templates\": {e}"
                        ),
                    });
                }
            }
        } else {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        };
        Self::new(path.display().to_string(), templates)
            .map_err(|e| Error::Templates(format!("{}: {e}", path.display())))
    }

    /// Parses a command-line choice: `openai80`, `zh80` (or `zh`: cn_clip's Chinese templates),
    /// `single`, `zh-single`, or a file path.
    pub fn from_choice(choice: &str) -> Result<Self> {
        match choice {
            "openai80" => Self::openai80(),
            "zh80" | "zh" => Self::cn_clip80(),
            "single" => Ok(Self::single()),
            "zh-single" => Ok(Self::zh_single()),
            path => Self::from_file(path),
        }
    }

    /// Number of templates.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// Whether there are no templates (never true for a constructed set).
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// The prompts for one class name: every template with each `{}` replaced by `name`.
    pub fn fill(&self, name: &str) -> Vec<String> {
        self.templates
            .iter()
            .map(|t| t.replace("{}", name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_data_is_openais() {
        let names = ClassNames::openai().unwrap();
        assert_eq!(names.len(), 1000);
        assert_eq!(names.names[0], "tench");
        assert_eq!(names.names[999], "toilet paper");
        // Known duplicates of the curated list.
        assert_eq!(names.names.iter().filter(|n| *n == "missile").count(), 2);
        assert_eq!(names.names.iter().filter(|n| *n == "sunglasses").count(), 2);
        let t = Templates::openai80().unwrap();
        assert_eq!(t.len(), 80);
        assert_eq!(t.templates[0], "a bad photo of a {}.");
        assert_eq!(t.fill("dog")[0], "a bad photo of a dog.");
        assert_eq!(Templates::single().fill("cat"), vec!["a photo of a cat."]);
    }

    #[test]
    fn shipped_chinese_data_is_cn_clips() {
        // Values read from cn_clip 1.6.0's imagenet_zeroshot_templates.py.
        let names = ClassNames::cn_clip().unwrap();
        assert_eq!((names.set.as_str(), names.len()), ("zh", 1000));
        assert_eq!(names.names[0], "丁鲷");
        assert_eq!(names.names[999], "卫生纸");
        assert_eq!(names.names[836], "太阳镜");
        assert_eq!(names.names[837], "太阳镜");
        let t = Templates::from_choice("zh").unwrap();
        assert_eq!((t.set.as_str(), t.len()), ("zh80", 80));
        assert_eq!(t.fill("猫")[0], "猫的照片。");
        assert_eq!(t.templates[79], "{}的刺青。");
    }

    #[test]
    fn template_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.txt");
        std::fs::write(&p, "a {}.\n\n  itap of a {}. \n").unwrap();
        assert_eq!(
            Templates::from_file(&p).unwrap().templates,
            vec!["a {}.", "itap of a {}."]
        );
        std::fs::write(&p, r#"["x {}", "y {}"]"#).unwrap();
        assert_eq!(Templates::from_file(&p).unwrap().len(), 2);
        std::fs::write(&p, r#"{"templates": ["z {}"]}"#).unwrap();
        assert_eq!(Templates::from_file(&p).unwrap().templates, vec!["z {}"]);
        std::fs::write(&p, "no placeholder\n").unwrap();
        assert!(matches!(Templates::from_file(&p), Err(Error::Templates(_))));
        std::fs::write(&p, "[1, 2]").unwrap();
        assert!(matches!(Templates::from_file(&p), Err(Error::Json { .. })));
        assert!(matches!(
            Templates::from_file(dir.path().join("missing")),
            Err(Error::Io { .. })
        ));
        assert!(ClassNames::new("x", vec![]).is_err());
        assert!(ClassNames::new("x", vec!["a".into(), " ".into()]).is_err());
    }
}
