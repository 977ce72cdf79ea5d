//! The recurrent state of a network between calls, passed in and returned as tch's recurrent modules
//! pass theirs (`RNN::seq_init`): no layer keeps it.
//!
//! [`Net::f_forward_state`](crate::Net::f_forward_state) takes a [`NetState`] (every recurrent layer's
//! state, in the order the layers compute) and returns the one the call leaves; each layer starts from
//! its own as its description's [`StateMode`](scratch::spec::StateMode) says (zeros, the rows as they
//! are, or their batch mean). The [`Trainer`](crate::train::Trainer) carries it from batch to batch,
//! detached, as the from-scratch engine's layers carry theirs.

use crate::layers::RecurrentState;

/// The state of every recurrent layer of a network, in the order the layers compute; empty when
/// nothing is carried (every layer then starts from zeros).
#[derive(Debug, Default)]
pub struct NetState {
    layers: Vec<RecurrentState>,
}

impl NetState {
    /// Nothing carried: every recurrent layer starts from zeros.
    pub fn new() -> Self {
        Self::default()
    }

    /// Each recurrent layer's state, in the order the layers compute.
    pub fn layers(&self) -> &[RecurrentState] {
        &self.layers
    }

    /// Whether nothing is carried.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The same values cut from the graph that computed them: what the next call starts from when
    /// gradients stop at the call's start (truncated back-propagation through time).
    pub fn detach(&self) -> Self {
        NetState { layers: self.layers.iter().map(RecurrentState::detach).collect() }
    }
}

/// A forward pass's way through a network's recurrent layers: each, in the order they compute, takes
/// the state it left in the previous call ([`StatePass::carried`]) and leaves its final one
/// ([`StatePass::leave`]).
#[derive(Debug)]
pub struct StatePass<'a> {
    from: &'a [RecurrentState],
    left: Vec<RecurrentState>,
}

impl<'a> StatePass<'a> {
    /// A pass from `state`.
    pub fn new(state: &'a NetState) -> Self {
        StatePass { from: &state.layers, left: Vec::new() }
    }

    /// A pass from nothing carried.
    pub fn zeros() -> Self {
        StatePass { from: &[], left: Vec::new() }
    }

    /// The state the next recurrent layer left in the previous call, if any.
    pub fn carried(&self) -> Option<&RecurrentState> {
        self.from.get(self.left.len())
    }

    /// Leaves the next recurrent layer's final state.
    pub fn leave(&mut self, state: RecurrentState) {
        self.left.push(state);
    }

    /// The states the pass left.
    ///
    /// # Errors
    /// A pass from a state that held another number of recurrent layers' states than the pass met.
    pub fn finish(self) -> crate::Result<NetState> {
        if !self.from.is_empty() && self.from.len() != self.left.len() {
            return Err(scratch::Error::InvalidArgument(format!(
                "the state holds {} recurrent layers' states, the network has {} recurrent layers",
                self.from.len(),
                self.left.len()
            ))
            .into());
        }
        Ok(NetState { layers: self.left })
    }
}
