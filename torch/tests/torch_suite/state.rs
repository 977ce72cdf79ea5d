//! Recurrent state passed in and returned, as tch's recurrent modules pass theirs: a sequence cut in
//! two and carried across the cut computes what the whole sequence computes, each description's
//! `StateMode` decides where a call starts, and a state or a `VarStore` that does not fit is refused by
//! name.

use scratch::rng::RandomState;
use scratch::spec::{book, CellKind, GruForm, RecurrentSpec, StateMode};
use tch::{Device, Kind, Tensor};
use torch::layers::Recurrent;
use torch::state::NetState;

const CELLS: [CellKind; 4] =
    [CellKind::Rnn, CellKind::Lstm, CellKind::Gru(GruForm::PyTorch), CellKind::Gru(GruForm::Book)];

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn a_sequence_cut_in_two_and_carried_across_computes_the_whole_sequence() {
    for cell in CELLS {
        let vs = torch::var_store::<f64>(Device::Cpu);
        let spec = RecurrentSpec::new(cell, 3, 5).layers(2);
        let layer = Recurrent::new(vs.root(), spec, Default::default(), &mut RandomState::new(1)).unwrap();
        let x = Tensor::randn([4, 7, 3], (Kind::Double, Device::Cpu));
        let (whole, last) = layer.seq(&x, false).unwrap();
        let (first, middle) = layer.seq(&x.narrow(1, 0, 4), false).unwrap();
        let (rest, end) = layer.seq_init(&x.narrow(1, 4, 3), &middle, false).unwrap();
        assert!(max_diff(&Tensor::cat(&[first, rest], 1), &whole) < 1e-12, "{cell:?}: outputs");
        assert!(max_diff(&end.h, &last.h) < 1e-12, "{cell:?}: final h");
        assert_eq!(end.c.is_some(), cell == CellKind::Lstm, "{cell:?}: only an LSTM has a cell state");
        let (from_zeros, _) = layer.seq(&x.narrow(1, 4, 3), false).unwrap();
        assert!(max_diff(&from_zeros, &whole.narrow(1, 4, 3)) > 1e-6, "{cell:?}: the carried state matters");
    }
}

#[test]
fn a_network_carries_its_state_as_its_description_says() {
    let x = |batch: i64| Tensor::randn([batch, 6, 4], (Kind::Float, Device::Cpu));
    for (mode, carries) in [(StateMode::Reset, false), (StateMode::Carry, true), (StateMode::CarryMean, true)] {
        let vs = torch::var_store::<f32>(Device::Cpu);
        let spec = book::language_model(CellKind::Lstm, 4, 8, 2, mode, 6);
        let net = torch::Net::new(vs.root(), &spec, &mut RandomState::new(3)).unwrap();
        let first = x(5);
        let (_, state) = net.f_forward_state(&first, &NetState::new(), false).unwrap();
        assert_eq!(state.layers().len(), 1);
        assert_eq!(state.layers()[0].h.size(), [2, 5, 8]);
        let second = x(5);
        let (carried, _) = net.f_forward_state(&second, &state.detach(), false).unwrap();
        let from_zeros = net.f_forward_t(&second, false).unwrap();
        assert_eq!(max_diff(&carried, &from_zeros) > 1e-6, carries, "{mode:?}");
        // Another batch size: the batch mean carries over, the rows themselves cannot.
        let other = net.f_forward_state(&x(3), &state, false);
        match mode {
            StateMode::Carry => {
                let err = other.unwrap_err().to_string();
                assert!(err.contains("the carried state has batch 5, this batch has 3"), "{err}");
            }
            _ => assert_eq!(other.unwrap().0.size(), [3, 6, 4]),
        }
    }
}

#[test]
fn a_state_that_does_not_fit_the_network_is_refused() {
    let vs = torch::var_store::<f32>(Device::Cpu);
    let lstm = torch::Net::new(
        &vs.root() / "lstm",
        &book::language_model(CellKind::Lstm, 4, 8, 1, StateMode::Carry, 6),
        &mut RandomState::new(0),
    )
    .unwrap();
    let x = Tensor::randn([2, 6, 4], (Kind::Float, Device::Cpu));
    let (_, state) = lstm.f_forward_state(&x, &NetState::new(), false).unwrap();
    let dense = torch::Net::new(&vs.root() / "dense", &book::boston_model(), &mut RandomState::new(0)).unwrap();
    let err = dense.f_forward_state(&Tensor::zeros([2, 13], (Kind::Float, Device::Cpu)), &state, false).unwrap_err();
    assert!(err.to_string().contains("the state holds 1 recurrent layers' states, the network has 0"), "{err}");

    let gru = torch::Net::new(
        &vs.root() / "gru",
        &book::language_model(CellKind::Gru(GruForm::PyTorch), 4, 8, 1, StateMode::Carry, 6),
        &mut RandomState::new(0),
    )
    .unwrap();
    let err = gru.f_forward_state(&x, &state, false).unwrap_err().to_string();
    assert!(err.contains("only an LSTM, has a cell state"), "{err}");
}

#[test]
fn a_second_network_under_the_same_path_is_refused_by_name() {
    let vs = torch::var_store::<f32>(Device::Cpu);
    let spec = book::boston_model();
    let first = torch::Net::new(&vs.root() / "model", &spec, &mut RandomState::new(0)).unwrap();
    let err = torch::Net::new(&vs.root() / "model", &spec, &mut RandomState::new(0)).unwrap_err().to_string();
    assert!(err.contains("already holds a parameter model.layers.0.weight"), "{err}");
    // The store is the network's list of parameters.
    let store = vs.variables();
    for (name, tensor) in first.named_parameters() {
        let held = &store[&format!("model.{name}")];
        assert_eq!(held.data_ptr(), tensor.data_ptr(), "{name}");
    }
    assert_eq!(store.len(), first.named_parameters().len());
}
