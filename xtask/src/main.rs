//! `cargo xtask <command>`: developer tools and the ImageNet evaluation.
//!
//! Each command lives in its own module; `main` only parses arguments and dispatches.

use clap::{Parser, Subcommand};

mod args;
mod bench_compare;
mod embed;
mod eval_imagenet;
mod meta_to_json;
mod parity;
mod parity_family;
mod parity_resnet;
mod preprocess;
mod reference;
mod tokenize;

#[derive(Parser)]
#[command(
    name = "xtask",
    about = "Developer tools and evaluations for the CLIP workspace"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the shared data folder the tests will use.
    SharedData,
    /// Zero-shot ImageNet top-1 / top-5 accuracy and timing of a CLIP model.
    EvalImagenet(Box<eval_imagenet::Args>),
    /// Write the devkit's meta.mat synsets as labels.json (id, wnid, words, gloss, class index).
    MetaToJson(meta_to_json::Args),
    /// OpenAI CLIP preprocessing of one image, written as a [1, 3, N, N] float32 .npy.
    Preprocess(preprocess::Args),
    /// OpenAI CLIP token ids of texts, one JSON array per line.
    Tokenize(tokenize::Args),
    /// Full-size random-model parity with open_clip (needs the reference venv).
    Parity(parity::Args),
    /// L2-normalised image and text embeddings as JSON.
    Embed(embed::Args),
    /// Our encoders and search vs PyTorch + open_clip, ONNX Runtime and FAISS, interleaved.
    BenchCompare(bench_compare::Args),
    /// Write a tiny random CLIP (OpenAI vocabulary; meaningless outputs) for trying the
    /// examples without real weights: `--model DIR/tiny-clip.safetensors`.
    TinyModel {
        /// The folder to write `tiny-clip.safetensors` into.
        #[arg(long, default_value = "target/tiny-clip")]
        out: std::path::PathBuf,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::SharedData => {
            println!("{}", dev_support::shared_data()?.display());
            Ok(())
        }
        Command::EvalImagenet(args) => eval_imagenet::run(*args).map(|_| ()),
        Command::MetaToJson(args) => meta_to_json::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Preprocess(args) => preprocess::run(args),
        Command::Parity(args) => parity::run(args),
        Command::Embed(args) => embed::run(args),
        Command::BenchCompare(args) => bench_compare::run(args),
        Command::TinyModel { out } => {
            std::fs::create_dir_all(&out)?;
            let path = dev_support::tiny_clip::write(&out)?;
            println!("{}", path.display());
            Ok(())
        }
    }
}
