//! Choosing the device a model runs on from its name, as command-line tools take it (`--device`).

use candle_core::Device;

use crate::error::{Error, Result};

/// Opens the device named `name`: `cpu`, `cuda` (the first GPU), `cuda:N`, `metal` or `metal:N`.
///
/// Nothing falls back to the CPU: a GPU name gives [`Error::DeviceNotBuilt`] when this build lacks
/// the cargo feature for it (`cuda`, `metal`), and [`Error::DeviceUnavailable`] when the feature is
/// there but the device cannot be opened (no GPU, no driver, an ordinal past the last GPU).
/// Anything else is [`Error::UnknownDevice`].
///
/// A build with the `cuda` feature links the NVIDIA driver's `libcuda.so.1` and the CUDA 13
/// runtime libraries, so its programs start only where those are installed.
///
/// ```
/// use clip_model::{Error, device_from_name};
///
/// assert!(device_from_name("cpu")?.is_cpu());
/// assert!(matches!(device_from_name("gpu"), Err(Error::UnknownDevice { .. })));
/// # Ok::<(), Error>(())
/// ```
pub fn device_from_name(name: &str) -> Result<Device> {
    let unknown = || Error::UnknownDevice {
        name: name.to_string(),
    };
    let trimmed = name.trim().to_ascii_lowercase();
    let (kind, ordinal) = match trimmed.split_once(':') {
        Some((kind, n)) => {
            // Digits only: `cuda:+1` or `cuda: 1` are typos, not ordinals.
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(unknown());
            }
            (kind, n.parse::<usize>().map_err(|_| unknown())?)
        }
        None => (trimmed.as_str(), 0),
    };
    match kind {
        "cpu" if !trimmed.contains(':') => Ok(Device::Cpu),
        "cuda" => {
            if !cfg!(feature = "cuda") {
                return Err(Error::DeviceNotBuilt {
                    name: name.to_string(),
                    feature: "cuda",
                });
            }
            Device::new_cuda(ordinal).map_err(|e| Error::DeviceUnavailable {
                name: name.to_string(),
                reason: e.to_string(),
            })
        }
        "metal" => {
            if !cfg!(feature = "metal") {
                return Err(Error::DeviceNotBuilt {
                    name: name.to_string(),
                    feature: "metal",
                });
            }
            Device::new_metal(ordinal).map_err(|e| Error::DeviceUnavailable {
                name: name.to_string(),
                reason: e.to_string(),
            })
        }
        _ => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_unknown_names() {
        assert!(device_from_name("cpu").unwrap().is_cpu());
        assert!(device_from_name(" CPU ").unwrap().is_cpu());
        for bad in [
            "", "gpu", "cpu:0", "cuda:", "cuda:x", "cuda:-1", "cuda:+1", "cuda:1:2", "tpu",
        ] {
            match device_from_name(bad) {
                Err(Error::UnknownDevice { name }) => assert_eq!(name, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let msg = device_from_name("gpu").unwrap_err().to_string();
        assert!(msg.contains("`gpu`") && msg.contains("cuda:N"), "{msg}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_typed_error() {
        for name in ["cuda", "cuda:0", "CUDA:3"] {
            match device_from_name(name) {
                Err(Error::DeviceNotBuilt { name: n, feature }) => {
                    assert_eq!((n.as_str(), feature), (name, "cuda"));
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        let msg = device_from_name("cuda:1").unwrap_err().to_string();
        assert!(
            msg.contains("`cuda:1`") && msg.contains("`cuda` feature"),
            "{msg}"
        );
    }

    #[cfg(not(feature = "metal"))]
    #[test]
    fn metal_without_the_feature_is_a_typed_error() {
        assert!(matches!(
            device_from_name("metal"),
            Err(Error::DeviceNotBuilt {
                feature: "metal",
                ..
            })
        ));
    }

    /// With the feature: a GPU opens, or the error says which device and why (no GPU, no
    /// driver); never a silent CPU. An ordinal no machine has is always unavailable.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_opens_or_says_why() {
        match device_from_name("cuda") {
            Ok(d) => assert!(d.is_cuda(), "{d:?}"),
            Err(Error::DeviceUnavailable { name, reason }) => {
                assert_eq!(name, "cuda");
                assert!(!reason.is_empty());
            }
            Err(e) => panic!("{e:?}"),
        }
        match device_from_name("cuda:4096") {
            Err(Error::DeviceUnavailable { name, .. }) => assert_eq!(name, "cuda:4096"),
            other => panic!("{other:?}"),
        }
    }
}
