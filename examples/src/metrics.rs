//! The numbers of a run, written to the output folder as JSON and as CSV, for plotting or comparing
//! elsewhere: `<out>/<experiment>-metrics.json` (summaries and curves) and
//! `<out>/<experiment>-metrics.csv` (one row per point of a curve, then one per summary value).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use scratch::train::FitReport;
use serde::Serialize;

use crate::engine::Engine;
use crate::experiments::Outputs;

/// One point of a loss curve.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// The engine: `scratch` or `torch`.
    pub engine: String,
    /// `train` or `validation`.
    pub split: &'static str,
    /// Where in training: epochs (fractional within an epoch) or iterations.
    pub at: f64,
    /// The loss there.
    pub loss: f64,
    /// The accuracy there, for classifiers.
    pub accuracy: Option<f64>,
}

/// The final numbers of one engine (or one model) of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The engine (and, where a run trains several models, the model).
    pub engine: String,
    /// Named values: accuracy, losses, seconds.
    pub values: BTreeMap<String, f64>,
}

/// Everything one experiment measured.
#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    /// The experiment's name.
    pub experiment: String,
    /// `f32` or `f64`.
    pub dtype: String,
    /// What `at` counts in the curves: `epoch` or `iteration`.
    pub unit: &'static str,
    /// Final numbers.
    pub summaries: Vec<Summary>,
    /// Loss curves.
    pub curves: Vec<Point>,
}

impl Metrics {
    /// An empty record of `experiment`.
    pub fn new(experiment: &str, dtype: &str, unit: &'static str) -> Self {
        Metrics { experiment: experiment.into(), dtype: dtype.into(), unit, summaries: Vec::new(), curves: Vec::new() }
    }

    /// Adds a summary of `engine` from `(name, value)` pairs.
    pub fn summary(&mut self, engine: impl Into<String>, values: &[(&str, f64)]) {
        let values = values.iter().map(|&(k, v)| (k.to_string(), v)).collect();
        self.summaries.push(Summary { engine: engine.into(), values });
    }

    /// Adds the curves of a [`FitReport`] of `engine`: the mean training loss of every epoch and every
    /// validation (at fractional epochs for those within an epoch), accuracies multiplied by
    /// `accuracy_scale` (100 for percent).
    pub fn fit_curves(&mut self, engine: Engine, report: &FitReport, accuracy_scale: f64) {
        let batches = report.batches_per_epoch();
        for (i, epoch) in report.batch_losses.chunks(batches).enumerate() {
            let loss = epoch.iter().sum::<f64>() / epoch.len() as f64;
            let engine = engine.to_string();
            self.curves.push(Point { engine, split: "train", at: (i + 1) as f64, loss, accuracy: None });
        }
        for v in &report.evaluations {
            self.curves.push(Point {
                engine: engine.to_string(),
                split: "validation",
                at: report.position(v),
                loss: v.loss,
                accuracy: v.accuracy.map(|a| a * accuracy_scale),
            });
        }
    }

    /// Writes the experiment's `<experiment>-metrics.json` and `.csv` ([`Outputs::metrics`]); returns
    /// their paths.
    ///
    /// # Errors
    /// If a file cannot be written.
    pub fn write(&self, out: &Outputs) -> Result<[PathBuf; 2]> {
        out.create_dir()?;
        let [json, csv_path] = out.metrics();
        crate::write::bytes(&json, serde_json::to_string_pretty(self)?)?;
        // Curves, then summaries: `at` is in the run's unit (epochs or iterations).
        let mut csv = String::from("experiment,dtype,engine,kind,name,at,value,accuracy\n");
        for p in &self.curves {
            let accuracy = p.accuracy.map(|a| a.to_string()).unwrap_or_default();
            let (e, d, unit) = (&self.experiment, &self.dtype, self.unit);
            csv.push_str(&format!("{e},{d},{},{unit} curve,{},{},{},{accuracy}\n", p.engine, p.split, p.at, p.loss));
        }
        for s in &self.summaries {
            for (name, value) in &s.values {
                csv.push_str(&format!("{},{},{},summary,{name},,{value},\n", self.experiment, self.dtype, s.engine));
            }
        }
        crate::write::bytes(&csv_path, csv)?;
        Ok([json, csv_path])
    }
}
