//! Bounded command-line numbers shared by the examples: an absurd count (`--queue
//! 18446744073709551615`, `-k 0`) is a clear argument error, not a panic, an impossible
//! allocation or a misleading answer.

use clap::builder::TypedValueParser;

/// Most results a search may ask for (`-k`).
pub const MAX_K: u64 = 1000;

/// Most model jobs allowed to wait (`gallery serve --queue`).
pub const MAX_QUEUE: u64 = 4096;

/// A whole number between `min` and `max` (inclusive), as a clap value parser; anything else is
/// refused with the allowed range in the message.
pub fn count(min: u64, max: u64) -> impl TypedValueParser<Value = usize> {
    clap::value_parser!(u64)
        .range(min..=max)
        // Within `max`, which every caller keeps far below `usize::MAX`.
        .map(|v| usize::try_from(v).unwrap_or(usize::MAX))
}

/// How many results (`-k`): 1 to [`MAX_K`].
pub fn k() -> impl TypedValueParser<Value = usize> {
    count(1, MAX_K)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Demo {
        #[arg(short, default_value_t = 10, value_parser = k())]
        k: usize,
        #[arg(long, default_value_t = 16, value_parser = count(1, MAX_QUEUE))]
        queue: usize,
    }

    #[test]
    fn counts_are_bounded_with_clear_errors() {
        let ok = Demo::try_parse_from(["demo", "-k", "1000", "--queue", "4096"]).unwrap();
        assert_eq!((ok.k, ok.queue), (1000, 4096));
        assert_eq!(Demo::try_parse_from(["demo"]).unwrap().k, 10);
        for args in [
            &["demo", "-k", "0"][..],
            &["demo", "-k", "1001"],
            &["demo", "--queue", "18446744073709551615"],
            &["demo", "--queue", "18446744073709551616"],
            &["demo", "--queue", "0"],
        ] {
            let e = Demo::try_parse_from(args).unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{args:?}"
            );
            let text = e.to_string();
            assert!(
                text.contains("1..=1000") || text.contains("1..=4096") || text.contains("invalid"),
                "{args:?}: {text}"
            );
        }
    }
}
