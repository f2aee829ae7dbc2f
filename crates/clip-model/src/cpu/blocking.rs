//! Cache blocking of the packed products, chosen from the CPU they run on.
//!
//! The depth block (`kc`) and the row block (`mc`) of [`super::packed`] come from this CPU's
//! per-core data caches, read with CPUID (leaf 4 on Intel, `0x8000_001D` on AMD), by the rule in
//! [`Blocking::for_caches`]; where CPUID gives no cache sizes, from the sizes of the machine the
//! rule was measured on. `CLIP_MODEL_BLOCKING=KC,MC` (depth in f32 values, even; rows)
//! overrides both, for sweeps; a value not of that form is ignored.

use std::sync::OnceLock;

/// Per-core data cache sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caches {
    /// Level-1 data cache.
    pub l1d: usize,
    /// Level-2 cache (private to a core on every x86 CPU with AVX-512 or AVX2).
    pub l2: usize,
}

impl Caches {
    /// The caches of the machine the rule was measured on (a 2-core AMD EPYC Zen 5 virtual
    /// machine, whose CPUID reports 32 KiB L1d and 1 MiB L2), used where CPUID reports none.
    pub(crate) const MEASURED: Caches = Caches {
        l1d: 32 << 10,
        l2: 1 << 20,
    };

    /// This CPU's caches, if CPUID reports them.
    pub(crate) fn detect() -> Option<Caches> {
        #[cfg(target_arch = "x86_64")]
        {
            cpuid_caches()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            None
        }
    }
}

/// The smallest depth block: each `k` block stores and reloads the output tile once more, and
/// the sweep in `packed.rs`'s docs measured bf16 products 20 % slower at 384 values (192 pairs)
/// than at 768 or more.
const MIN_KC: usize = 768;

/// Blocking of one packed product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blocking {
    /// Largest depth of one `k` block, in f32 values (with bf16 weights `kc / 2` pairs: the
    /// same depth in values, half the bytes).
    pub kc: usize,
    /// Rows of one row block.
    pub mc: usize,
}

impl Blocking {
    /// The blocking for caches `c`.
    ///
    /// - `kc`: one `kc × NR` f32 weight panel takes an eighth of L2, so that it stays in L2 while
    ///   the row block streams past it (rounded down to a multiple of 64), but at least
    ///   [`MIN_KC`].
    /// - `mc`: the `mc × kc` input block takes half of L2 next to it (rounded down to a
    ///   multiple of the 12-row register tile, at least 24).
    ///
    /// On the measured machine this gives `kc` 1024, `mc` 120, inside the region where the
    /// sweep in `packed.rs`'s docs found ViT-B/32 equally fast.
    pub(crate) fn for_caches(c: Caches) -> Blocking {
        let kc = (c.l2 / 8 / (super::NR * 4) / 64 * 64).max(MIN_KC);
        let mc = (c.l2 / 2 / (kc * 4) / 12 * 12).max(24);
        Blocking { kc, mc }
    }

    /// The blocking to use in this process: `CLIP_MODEL_BLOCKING`, else from this CPU's caches,
    /// else from [`Caches::MEASURED`]. Read once.
    pub(crate) fn get() -> Blocking {
        static CHOSEN: OnceLock<Blocking> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            std::env::var("CLIP_MODEL_BLOCKING")
                .ok()
                .and_then(|v| Blocking::parse(&v))
                .unwrap_or_else(|| {
                    Blocking::for_caches(Caches::detect().unwrap_or(Caches::MEASURED))
                })
        })
    }

    /// `KC,MC`, both positive (`kc` even, for bf16 pairs); `None` otherwise.
    fn parse(v: &str) -> Option<Blocking> {
        let (kc, mc) = v.split_once(',')?;
        let (kc, mc): (usize, usize) = (kc.trim().parse().ok()?, mc.trim().parse().ok()?);
        (kc >= 2 && kc.is_multiple_of(2) && mc >= 1).then_some(Blocking { kc, mc })
    }
}

/// Level-1 data and level-2 cache sizes from CPUID's deterministic cache parameters (leaf 4 on
/// Intel, leaf `0x8000_001D` on AMD; the same register layout).
#[cfg(target_arch = "x86_64")]
fn cpuid_caches() -> Option<Caches> {
    use std::arch::x86_64::__cpuid_count;
    // Leaves above the reported maximum are not read.
    let vendor = __cpuid_count(0, 0);
    let max_ext = __cpuid_count(0x8000_0000, 0).eax;
    let max_basic = vendor.eax;
    let amd = [vendor.ebx, vendor.edx, vendor.ecx] == [0x6874_7541, 0x6974_6e65, 0x444d_4163];
    let leaf = match amd {
        true if max_ext >= 0x8000_001D => 0x8000_001D,
        false if max_basic >= 4 => 4,
        _ => return None,
    };
    let (mut l1d, mut l2) = (None, None);
    for sub in 0..16 {
        // `leaf` is within the range CPUID reports.
        let r = __cpuid_count(leaf, sub);
        let kind = r.eax & 0x1f;
        if kind == 0 {
            break;
        }
        let level = (r.eax >> 5) & 0x7;
        let line = (r.ebx & 0xfff) as usize + 1;
        let partitions = ((r.ebx >> 12) & 0x3ff) as usize + 1;
        let ways = ((r.ebx >> 22) & 0x3ff) as usize + 1;
        let sets = r.ecx as usize + 1;
        let size = line * partitions * ways * sets;
        match (level, kind) {
            (1, 1) => l1d = Some(size),    // data
            (2, 1 | 3) => l2 = Some(size), // data or unified
            _ => {}
        }
    }
    Some(Caches { l1d: l1d?, l2: l2? })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule against the sweep in `packed.rs`'s docs: on the measured machine it lands in
    /// the region measured equally fast (`kc` 768..=3072, `mc` 48..=192); elsewhere it keeps
    /// the floor and the working set within L2.
    #[test]
    fn rule_stays_where_it_was_measured() {
        let here = Blocking::for_caches(Caches::MEASURED);
        assert!(
            (768..=3072).contains(&here.kc) && (48..=192).contains(&here.mc),
            "{here:?}"
        );
        for l2 in [256 << 10, 512 << 10, 1 << 20, 1280 << 10, 2 << 20, 4 << 20] {
            let b = Blocking::for_caches(Caches { l1d: 48 << 10, l2 });
            assert!(
                b.kc >= MIN_KC && b.kc.is_multiple_of(64) && b.mc.is_multiple_of(12),
                "{b:?}"
            );
            // Above the floor the input block and one weight panel fit in 5/8 of L2.
            if b.kc > MIN_KC {
                assert!(
                    (b.mc + super::super::NR) * b.kc * 4 <= l2 / 8 * 5,
                    "{l2}: {b:?}"
                );
            }
        }
    }

    #[test]
    fn overrides_are_checked() {
        assert_eq!(
            Blocking::parse("768, 96"),
            Some(Blocking { kc: 768, mc: 96 })
        );
        for bad in ["", "768", "767,96", "0,96", "768,0", "a,b", "768,96,1"] {
            assert_eq!(Blocking::parse(bad), None, "{bad}");
        }
    }

    /// The CPUID decoding against Linux's own (the kernel decodes the same leaves into sysfs).
    #[test]
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn cpuid_sizes_match_linux() {
        let sysfs = |level: &str, kinds: &[&str]| -> usize {
            let base = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
            for i in 0..8 {
                let read = |f: &str| std::fs::read_to_string(base.join(format!("index{i}/{f}")));
                let (Ok(l), Ok(t), Ok(s)) = (read("level"), read("type"), read("size")) else {
                    continue;
                };
                if l.trim() == level && kinds.contains(&t.trim()) {
                    let kib: usize = s.trim().trim_end_matches('K').parse().unwrap();
                    return kib << 10;
                }
            }
            panic!("no level-{level} {kinds:?} cache in {}", base.display());
        };
        let expected = Caches {
            l1d: sysfs("1", &["Data"]),
            l2: sysfs("2", &["Data", "Unified"]),
        };
        assert_eq!(Caches::detect(), Some(expected));
    }
}
