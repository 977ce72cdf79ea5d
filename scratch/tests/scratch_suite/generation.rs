//! Generating text with a GPT and its key-value cache: the cached logits are the whole network's on the
//! same tokens, generation is reproducible, and bad tokens and mismatched configurations are refused.

use ndarray::{Array2, Axis};
use scratch::network::NeuralNetwork;
use scratch::rng::RandomState;
use scratch::rnn::Sampling;
use scratch::spec::gpt::{gpt, GptConfig};
use scratch::transformer::Generator;

/// Within the context, every cached step's logits are the whole network's at that position on the
/// same tokens; past it, those of the network on the kept half of the context.
#[test]
fn cached_and_uncached_logits_agree() {
    let config = GptConfig { vocab: 11, context: 8, layers: 2, heads: 2, width: 12, dropout: 0.0, bias: true };
    let net = NeuralNetwork::<f64>::build(&gpt(&config), &mut RandomState::new(5)).unwrap();
    let tokens: Vec<usize> = (0..13).map(|i| (i * 7 + 3) % 11).collect();
    let mut generator = Generator::new(&net, &config).unwrap();
    let whole = |context: &[usize]| {
        let x = Array2::from_shape_fn((1, context.len()), |(_, t)| context[t] as f64);
        let y = net.predict(&x).unwrap();
        y.index_axis(Axis(0), 0).index_axis(Axis(0), context.len() - 1).to_owned()
    };
    for (n, &t) in tokens.iter().enumerate() {
        let cached = generator.push(t).unwrap();
        let context = generator.tokens().to_vec();
        assert_eq!(context.last(), Some(&t));
        assert!(context.len() <= config.context, "the context is cut when full");
        let expected = whole(&context);
        let worst = (&cached - &expected).iter().fold(0.0f64, |m, d| m.max(d.abs()));
        assert!(worst < 1e-12, "step {n}: cached and uncached logits differ by {worst}");
    }
    assert_eq!(generator.tokens().len(), 8 - 4 + 1, "cut to its last half once, then grown to 5");
}

#[test]
fn generation_is_reproducible_and_checks_its_input() {
    let config = GptConfig { vocab: 7, context: 6, layers: 1, heads: 1, width: 4, dropout: 0.0, bias: false };
    let net = NeuralNetwork::<f32>::build(&gpt(&config), &mut RandomState::new(1)).unwrap();
    let sampling = Sampling { temperature: 0.8, top_k: Some(3) };
    let draw = || Generator::new(&net, &config).unwrap().generate(&[1, 2], 20, &sampling, &mut RandomState::new(9));
    let a = draw().unwrap();
    assert_eq!(a.len(), 20);
    assert!(a.iter().all(|&t| t < 7));
    assert_eq!(a, draw().unwrap());
    let mut generator = Generator::new(&net, &config).unwrap();
    assert!(generator.generate(&[], 3, &sampling, &mut RandomState::new(0)).is_err());
    assert!(generator.push(7).unwrap_err().to_string().contains("outside the vocabulary"));
    let other = GptConfig { layers: 2, ..config };
    assert!(Generator::new(&net, &other).err().unwrap().to_string().contains("no layer transformer.h.1.ln_1"));
}
