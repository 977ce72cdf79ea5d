//! A run of experiments, in three stages, so that no run is thrown away by a late check:
//!
//! 1. without data: the names (known, none twice), the options against each other and against the
//!    machine (`--device cuda` resolved, `--resume` an existing file, `--out` a folder that can be
//!    written, and every file the run will write one that can be replaced); single values (counts, rates, the temperature, the prompt) were checked as the command
//!    line was parsed;
//! 2. each experiment [prepared](super::Experiment::prepare): its data loaded, and what needs the data
//!    checked (the prompt's characters against the corpus, the corpus's length, the checkpoint against
//!    the network);
//! 3. the experiments trained, one after another.
//!
//! A failure in stage 1 or 2 stops the run before anything trains.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};

use super::{find, Cache, Experiment, Opt, Options, Outputs, Prepared, Ran, Settings};
use crate::engine::{Engine, Engines};

/// The options every command shares.
#[derive(Clone, Debug)]
pub struct Context {
    /// The data folder.
    pub data: PathBuf,
    /// The output folder.
    pub out: PathBuf,
    /// No progress output.
    pub quiet: bool,
}

/// The experiments named `names`, in order.
///
/// # Errors
/// An unknown name, or one given twice.
pub fn resolve(names: &[impl AsRef<str>]) -> Result<Vec<&'static Experiment>> {
    let mut experiments: Vec<&'static Experiment> = Vec::new();
    for name in names {
        let e = find(name.as_ref())?;
        if experiments.iter().any(|x| x.name == e.name) {
            bail!("{} is named twice; name each experiment once", e.name);
        }
        experiments.push(e);
    }
    Ok(experiments)
}

/// The flags of `options`, comma-separated.
fn flags(options: &[Opt]) -> String {
    options.iter().map(|o| o.flag()).collect::<Vec<_>>().join(", ")
}

/// Notes about options given that do nothing: one per experiment that does not take some of them, and
/// one for `--device` when only the from-scratch engine runs.
pub fn notes(experiments: &[&Experiment], options: &Options) -> Vec<String> {
    let mut notes: Vec<String> = experiments
        .iter()
        .filter_map(|e| {
            let unused = options.set_outside(e.options);
            (!unused.is_empty()).then(|| format!("note: {} does not use {}", e.name, flags(&unused)))
        })
        .collect();
    notes.extend(device_note(experiments, options));
    notes
}

/// A note naming the options given that none of `experiments` (together called `what`) takes.
pub fn group_notes(what: &str, experiments: &[&Experiment], options: &Options) -> Vec<String> {
    let unused: Vec<Opt> = Opt::ALL
        .into_iter()
        .filter(|&o| options.is_set(o) && !experiments.iter().any(|e| e.options.contains(&o)))
        .collect();
    let mut notes: Vec<String> = Vec::new();
    if !unused.is_empty() {
        notes.push(format!("note: {what} does not use {}", flags(&unused)));
    }
    notes.extend(device_note(experiments, options));
    notes
}

fn device_note(experiments: &[&Experiment], options: &Options) -> Option<String> {
    let takes_device = experiments.iter().any(|e| e.options.contains(&Opt::Device));
    (takes_device && options.device_given().is_some() && options.engines() == Engines::Scratch)
        .then(|| "note: --device applies to the torch engine, which --engine scratch does not run".to_string())
}

/// The checks of stage 1, for `experiments` run with `options` (each seeing the options it takes).
///
/// # Errors
/// The first option that cannot work, naming it and what to change.
pub fn check(experiments: &[&Experiment], options: &Options, context: &Context) -> Result<()> {
    let taken: Vec<Options> = experiments.iter().map(|e| options.only(e.options)).collect();
    // The device matters only where the torch engine runs (otherwise a note says it does nothing).
    let torch_device = taken.iter().filter(|o| o.engines().contains(Engine::Torch)).find_map(Options::device_given);
    if let Some(device) = torch_device {
        device.resolve().map_err(|e| anyhow!("--device {device}: {e}"))?;
    }
    if let Some(path) = taken.iter().find_map(Options::resume) {
        check_resume(path)?;
    }
    let files: Vec<PathBuf> =
        experiments.iter().zip(&taken).flat_map(|(e, o)| e.files(&context.out, o.engines())).collect();
    if !files.is_empty() {
        check_out(&context.out)?;
    }
    files.iter().try_for_each(|file| crate::write::check(file))
}

/// `--resume` names a regular file (whether it fits the network is checked in stage 2).
fn check_resume(path: &Path) -> Result<()> {
    let hint = "give a checkpoint that `dlfs run` saved, such as out/<experiment>-<engine>.safetensors";
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => bail!("--resume {}: not a regular file; {hint}", path.display()),
        Err(e) => bail!("--resume {}: {e}; {hint}", path.display()),
    }
}

/// `--out` is a folder that exists or can be created, and can be written into.
fn check_out(out: &Path) -> Result<()> {
    let hint = "choose another folder with --out";
    std::fs::create_dir_all(out)
        .with_context(|| format!("--out {}: cannot create the folder; {hint}", out.display()))?;
    let probe = out.join(format!(".dlfs-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("--out {}: cannot write into the folder; {hint}", out.display()))?;
    std::fs::remove_file(&probe).with_context(|| format!("removing {}", probe.display()))
}

/// One experiment, prepared, and the files its registry entry says it writes.
struct Step {
    experiment: &'static Experiment,
    prepared: Box<dyn Prepared>,
    declared: Vec<PathBuf>,
}

/// Experiments that passed stages 1 and 2, ready to train.
pub struct Plan {
    steps: Vec<Step>,
    quiet: bool,
}

impl Plan {
    /// Stages 1 and 2 for `experiments` with `options`.
    ///
    /// # Errors
    /// The first check that fails; nothing has trained.
    pub fn new(experiments: &[&'static Experiment], options: &Options, context: &Context) -> Result<Plan> {
        check(experiments, options, context)?;
        let mut cache = Cache::default();
        let mut steps = Vec::new();
        for &experiment in experiments {
            let settings = Settings {
                options: options.only(experiment.options),
                data: context.data.clone(),
                outputs: Outputs::new(&context.out, experiment.name),
                quiet: context.quiet,
            };
            let declared = experiment.files(&context.out, settings.options.engines());
            let prepared = experiment.prepare(settings, &mut cache)?;
            steps.push(Step { experiment, prepared, declared });
        }
        Ok(Plan { steps, quiet: context.quiet })
    }

    /// Stage 3: trains each experiment in turn, naming the files it wrote, and hands what it produced
    /// to `after`.
    ///
    /// # Errors
    /// The first experiment that fails, or what `after` returns.
    ///
    /// # Panics
    /// If an experiment wrote a file its registry entry does not list: a bug, which would let two
    /// experiments overwrite each other's files.
    pub fn run(self, mut after: impl FnMut(&Experiment, &Ran) -> Result<()>) -> Result<()> {
        for step in self.steps {
            let ran = step.prepared.run()?;
            for file in &ran.files {
                assert!(
                    step.declared.contains(file),
                    "{} wrote {}, which its registry entry does not list",
                    step.experiment.name,
                    file.display()
                );
                if !self.quiet {
                    eprintln!("wrote {}", file.display());
                }
            }
            after(step.experiment, &ran)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options as the command line would give them: `(option, value)` pairs.
    fn options(given: &[(Opt, &str)]) -> Options {
        let mut o = Options::default();
        for &(opt, value) in given {
            o.set(opt, value).unwrap();
        }
        o
    }

    #[test]
    fn names_resolve_in_order_once_each() {
        let names: Vec<_> = resolve(&["ch6-rnn", "boston"]).unwrap().iter().map(|e| e.name).collect();
        assert_eq!(names, ["ch6-rnn", "boston"]);
        let err = resolve(&["boston", "ch6-rnn", "boston"]).unwrap_err().to_string();
        assert!(err.contains("boston is named twice"), "{err}");
        assert!(resolve(&["boston", "nothing"]).is_err());
    }

    #[test]
    fn notes_name_the_options_an_experiment_does_not_take() {
        let experiments = resolve(&["boston", "ch6-lstm", "ch7-lstm"]).unwrap();
        let given = options(&[(Opt::Epochs, "3"), (Opt::BookWindows, ""), (Opt::Engine, "torch")]);
        assert_eq!(
            notes(&experiments, &given),
            [
                "note: boston does not use --epochs, --book-windows",
                "note: ch6-lstm does not use --epochs",
                "note: ch7-lstm does not use --epochs, --book-windows"
            ]
        );
        assert_eq!(group_notes("the tour", &experiments, &given), ["note: the tour does not use --epochs"]);
        let scratch_on_cuda = options(&[(Opt::Engine, "scratch"), (Opt::Device, "cuda")]);
        assert_eq!(
            notes(&experiments[1..2], &scratch_on_cuda),
            ["note: --device applies to the torch engine, which --engine scratch does not run"]
        );
        assert!(notes(&experiments[..1], &scratch_on_cuda)[0].contains("boston does not use --device"));
        // A device that does not apply is a note, not a failure, even where CUDA is missing.
        let context = Context { data: "data".into(), out: std::env::temp_dir(), quiet: true };
        check(&experiments[1..2], &scratch_on_cuda, &context).unwrap();
    }

    #[test]
    fn a_missing_checkpoint_or_an_unwritable_output_folder_is_found_first() {
        let dir = std::env::temp_dir().join(format!("dlfs-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let context = Context { data: dir.clone(), out: dir.join("out"), quiet: true };
        let lstm = resolve(&["ch6-lstm"]).unwrap();
        let missing = dir.join("none.safetensors");
        let err = check(&lstm, &options(&[(Opt::Resume, missing.to_str().unwrap())]), &context).unwrap_err();
        assert!(err.to_string().starts_with(&format!("--resume {}", dir.join("none.safetensors").display())), "{err}");
        let folder = options(&[(Opt::Resume, dir.to_str().unwrap())]);
        let err = check(&lstm, &folder, &context).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        // boston does not take --resume: nothing to check.
        check(&resolve(&["boston"]).unwrap(), &folder, &context).unwrap();
        let file = dir.join("a-file");
        std::fs::write(&file, b"").unwrap();
        let blocked = Context { out: file.join("out"), ..context.clone() };
        let err = check(&lstm, &Options::default(), &blocked).unwrap_err();
        assert!(format!("{err:#}").contains("cannot create the folder"), "{err:#}");
        // divergence writes nothing, so it needs no output folder.
        check(&resolve(&["divergence"]).unwrap(), &Options::default(), &blocked).unwrap();
        // An output that is a folder is found before anything trains.
        let out = Context { out: dir.join("out"), ..context.clone() };
        for file in ["ch6-lstm-loss.png", "ch6-lstm-scratch.safetensors", "ch6-lstm-metrics.json"] {
            std::fs::create_dir_all(out.out.join(file)).unwrap();
            let err = check(&lstm, &Options::default(), &out).unwrap_err().to_string();
            assert!(err.contains(&format!("{file} is a folder")), "{err}");
            std::fs::remove_dir(out.out.join(file)).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
