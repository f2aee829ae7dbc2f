//! The gallery demo: index a folder of pictures, search it with English text, and serve a web page.
//!
//! ```text
//! cargo run --release --example gallery -- index examples/photos --db gallery/lib.sqlite
//! cargo run --release --example gallery -- search "a cat" --db gallery/lib.sqlite -k 3
//! cargo run --release --example gallery -- similar examples/photos/chelsea.png --db gallery/lib.sqlite
//! cargo run --release --example gallery -- serve --db gallery/lib.sqlite   # http://127.0.0.1:8080
//! ```
//! All sub-commands take `--model NAME|HUB_ID|FILE` (default: `$CLIP_MODEL`, else ViT-B-32,
//! downloaded into the Hugging Face cache on first use). The commands are in
//! `clip_examples::gallery::cli`; the library, model worker and server beside it.

use std::process::exit;

use clap::Parser;
use clip_examples::gallery::cli::{self, Cli};

fn main() {
    if let Err(e) = cli::run(Cli::parse()) {
        eprintln!("error: {e:#}");
        exit(1);
    }
}
