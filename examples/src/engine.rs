//! The two engines, and the choice of them on the command line (`--engine scratch|torch|both`).

use std::fmt;

/// One of the two implementations of the book's models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    /// From first principles on ndarray (`scratch`).
    Scratch,
    /// On libtorch (`torch`).
    Torch,
}

impl Engine {
    /// Both engines, in the order runs train them.
    pub const ALL: [Engine; 2] = [Engine::Scratch, Engine::Torch];

    /// The engine's name, as in file names and tables: `scratch` or `torch`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Scratch => "scratch",
            Engine::Torch => "torch",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which engines a run trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Engines {
    /// The from-scratch engine only.
    Scratch,
    /// The libtorch engine only.
    Torch,
    /// Both, side by side.
    #[default]
    Both,
}

impl Engines {
    /// Whether `engine` is among them.
    pub fn contains(self, engine: Engine) -> bool {
        match self {
            Engines::Scratch => engine == Engine::Scratch,
            Engines::Torch => engine == Engine::Torch,
            Engines::Both => true,
        }
    }

    /// The selected engines, scratch first.
    pub fn iter(self) -> impl Iterator<Item = Engine> {
        Engine::ALL.into_iter().filter(move |&e| self.contains(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_yields_its_engines_in_order() {
        assert_eq!(Engines::Both.iter().collect::<Vec<_>>(), [Engine::Scratch, Engine::Torch]);
        assert_eq!(Engines::Scratch.iter().collect::<Vec<_>>(), [Engine::Scratch]);
        assert_eq!(Engines::Torch.iter().collect::<Vec<_>>(), [Engine::Torch]);
        assert_eq!(format!("{}-{}", Engine::Scratch, Engine::Torch), "scratch-torch");
    }
}
