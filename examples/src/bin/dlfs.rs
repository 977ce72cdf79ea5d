//! `dlfs`: run the experiments of *Deep Learning from Scratch* with both engines.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use examples::{boston, reproduce};

#[derive(Parser)]
#[command(
    version,
    about = "Run the experiments of Deep Learning from Scratch with the from-scratch and libtorch engines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Clone)]
struct Common {
    /// Folder with the data sets (default: the workspace's data/, or $DLFS_DATA)
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// Folder for plots and results
    #[arg(long, global = true, default_value = "out")]
    out: PathBuf,
    /// Print only the results, no progress
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// List the experiments
    List,
    /// Run one experiment
    Run {
        /// The experiment's name (see `dlfs list`)
        experiment: String,
    },
    /// Recompute the book's deterministic results and compare them with its printed numbers
    Reproduce,
    /// A short tour: the book's numbers, then the chapter 2 and 3 models on Boston housing
    Tour,
}

/// Every experiment: name, chapters, description.
const EXPERIMENTS: [(&str, &str, &str); 1] = [(
    "boston",
    "2, 3",
    "linear regression and neural networks on Boston housing: chapter 2 step by step, chapter 3 with layers",
)];

fn run_boston(common: &Common, data: &std::path::Path) -> Result<boston::BostonResults> {
    let results = boston::run(data, common.quiet)?;
    println!("{}", results.table().render());
    for path in results.plot(&common.out)? {
        println!("wrote {}", path.display());
    }
    Ok(results)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let data = cli.common.data.clone().unwrap_or_else(scratch::data::default_dir);
    let start = Instant::now();
    match &cli.command {
        Command::List => {
            let mut t = examples::table::Table::new("Experiments (`dlfs run <name>`)", &["name", "chapters", "what"]);
            for (name, chapters, what) in EXPERIMENTS {
                t.push(vec![name.into(), chapters.into(), what.into()]);
            }
            println!("{}", t.render());
        }
        Command::Run { experiment } => match experiment.as_str() {
            "boston" => {
                run_boston(&cli.common, &data)?;
            }
            other => bail!("unknown experiment {other:?}; `dlfs list` shows them"),
        },
        Command::Reproduce | Command::Tour => {
            let mut checks = reproduce::chapter1()?;
            let results = if matches!(cli.command, Command::Tour) {
                run_boston(&cli.common, &data)?
            } else {
                boston::run(&data, cli.common.quiet)?
            };
            checks.extend(reproduce::boston(&results));
            println!("{}", reproduce::table(&checks).render());
            let matched = checks.iter().filter(|c| c.matches()).count();
            println!("{matched} of {} printed numbers reproduced", checks.len());
        }
    }
    if !cli.common.quiet {
        eprintln!("finished in {:.1} s", start.elapsed().as_secs_f64());
    }
    Ok(())
}
