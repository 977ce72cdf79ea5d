//! Chapter 6's automatic differentiation on scalars (the book's `NumberWithGrad`), done right.
//!
//! Every operation on a [`Var`] records its inputs and the local derivative with respect to each, so the
//! expression forms a graph. [`Var::backward`] visits that graph once, in reverse topological order, and
//! gives every node `∂out/∂node` by the chain rule:
//!
//! ```text
//! grad(node) = Σ over the uses u of node:  grad(u) · ∂u/∂node
//! ```
//!
//! Because each node is finished before its inputs are visited, a node used twice contributes both uses
//! exactly once: `b = a·2; (b + b).backward()` gives `a.grad = 4`. The book's version pushes each node's
//! accumulated gradient down every time it is reached, and gives 6.
//!
//! Gradients accumulate across calls of `backward`, as in PyTorch; [`Var::zero_grad`] resets one.
//!
//! ```
//! use scratch::autodiff::Var;
//!
//! let a = Var::new(3.0);
//! let e = (&a * 4.0 + 3.0) * (&a + 2.0);
//! e.backward();
//! assert_eq!(a.grad(), 35.0);
//! ```

use std::cell::RefCell;
use std::collections::HashSet;
use std::ops::{Add, Div, Mul, Neg, Sub};
use std::rc::Rc;

struct Node {
    value: f64,
    grad: f64,
    /// The inputs of the operation that made this node, with `∂self/∂input`.
    parents: Vec<(Var, f64)>,
}

impl Drop for Node {
    /// Frees a long chain of nodes without recursion (the default drop would recurse once per link).
    fn drop(&mut self) {
        let mut stack: Vec<Var> = std::mem::take(&mut self.parents).into_iter().map(|(v, _)| v).collect();
        while let Some(var) = stack.pop() {
            if let Ok(cell) = Rc::try_unwrap(var.0) {
                let mut node = cell.into_inner();
                stack.extend(std::mem::take(&mut node.parents).into_iter().map(|(v, _)| v));
            }
        }
    }
}

/// A number that remembers how it was computed, so that its gradient can be taken.
#[derive(Clone)]
pub struct Var(Rc<RefCell<Node>>);

impl std::fmt::Debug for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Var({}, grad {})", self.value(), self.grad())
    }
}

impl Var {
    /// A leaf: a number not computed from others.
    pub fn new(value: f64) -> Self {
        Var(Rc::new(RefCell::new(Node { value, grad: 0.0, parents: Vec::new() })))
    }

    fn from_op(value: f64, parents: Vec<(Var, f64)>) -> Self {
        Var(Rc::new(RefCell::new(Node { value, grad: 0.0, parents })))
    }

    /// The value.
    pub fn value(&self) -> f64 {
        self.0.borrow().value
    }

    /// `∂out/∂self`, summed over every `backward` call since the last [`Var::zero_grad`].
    pub fn grad(&self) -> f64 {
        self.0.borrow().grad
    }

    /// Sets the gradient back to 0.
    pub fn zero_grad(&self) {
        self.0.borrow_mut().grad = 0.0;
    }

    fn id(&self) -> *const RefCell<Node> {
        Rc::as_ptr(&self.0)
    }

    /// The nodes this one depends on (itself included), each after everything that uses it.
    fn reverse_topological_order(&self) -> Vec<Var> {
        let (mut order, mut seen) = (Vec::new(), HashSet::new());
        // Iterative depth-first search: (node, whether its parents have been pushed).
        let mut stack = vec![(self.clone(), false)];
        while let Some((node, expanded)) = stack.pop() {
            if expanded {
                order.push(node);
                continue;
            }
            if !seen.insert(node.id()) {
                continue;
            }
            stack.push((node.clone(), true));
            for (parent, _) in &node.0.borrow().parents {
                if !seen.contains(&parent.id()) {
                    stack.push((parent.clone(), false));
                }
            }
        }
        order.reverse();
        order
    }

    /// Adds `∂self/∂node` to the gradient of every node `self` depends on (and 1 to its own).
    pub fn backward(&self) {
        let order = self.reverse_topological_order();
        // The gradients of this call, by node; added to the stored ones at the end.
        let mut pass: std::collections::HashMap<*const RefCell<Node>, f64> = std::collections::HashMap::new();
        pass.insert(self.id(), 1.0);
        for node in &order {
            let g = pass.get(&node.id()).copied().unwrap_or(0.0);
            for (parent, local) in &node.0.borrow().parents {
                *pass.entry(parent.id()).or_insert(0.0) += g * local;
            }
        }
        for node in &order {
            node.0.borrow_mut().grad += pass[&node.id()];
        }
    }

    /// `selfⁿ`.
    pub fn powf(&self, n: f64) -> Var {
        let x = self.value();
        Var::from_op(x.powf(n), vec![(self.clone(), n * x.powf(n - 1.0))])
    }

    /// `eˣ`.
    pub fn exp(&self) -> Var {
        let y = self.value().exp();
        Var::from_op(y, vec![(self.clone(), y)])
    }

    /// `tanh(x)`, derivative `1 − tanh²(x)`.
    pub fn tanh(&self) -> Var {
        let y = self.value().tanh();
        Var::from_op(y, vec![(self.clone(), 1.0 - y * y)])
    }

    /// `σ(x) = 1 / (1 + e⁻ˣ)`, derivative `σ(x)(1 − σ(x))`.
    pub fn sigmoid(&self) -> Var {
        let y = 1.0 / (1.0 + (-self.value()).exp());
        Var::from_op(y, vec![(self.clone(), y * (1.0 - y))])
    }

    /// `ln(x)`, derivative `1 / x`.
    pub fn ln(&self) -> Var {
        let x = self.value();
        Var::from_op(x.ln(), vec![(self.clone(), 1.0 / x)])
    }
}

fn add(a: &Var, b: &Var) -> Var {
    Var::from_op(a.value() + b.value(), vec![(a.clone(), 1.0), (b.clone(), 1.0)])
}

fn sub(a: &Var, b: &Var) -> Var {
    Var::from_op(a.value() - b.value(), vec![(a.clone(), 1.0), (b.clone(), -1.0)])
}

fn mul(a: &Var, b: &Var) -> Var {
    let (x, y) = (a.value(), b.value());
    Var::from_op(x * y, vec![(a.clone(), y), (b.clone(), x)])
}

fn div(a: &Var, b: &Var) -> Var {
    let (x, y) = (a.value(), b.value());
    Var::from_op(x / y, vec![(a.clone(), 1.0 / y), (b.clone(), -x / (y * y))])
}

/// The four arithmetic operators for every mix of `Var`, `&Var` and `f64` (a number is a leaf).
macro_rules! binary {
    ($trait:ident, $method:ident, $f:ident) => {
        impl $trait<&Var> for &Var {
            type Output = Var;
            fn $method(self, rhs: &Var) -> Var {
                $f(self, rhs)
            }
        }
        impl $trait<Var> for Var {
            type Output = Var;
            fn $method(self, rhs: Var) -> Var {
                $f(&self, &rhs)
            }
        }
        impl $trait<&Var> for Var {
            type Output = Var;
            fn $method(self, rhs: &Var) -> Var {
                $f(&self, rhs)
            }
        }
        impl $trait<Var> for &Var {
            type Output = Var;
            fn $method(self, rhs: Var) -> Var {
                $f(self, &rhs)
            }
        }
        impl $trait<f64> for &Var {
            type Output = Var;
            fn $method(self, rhs: f64) -> Var {
                $f(self, &Var::new(rhs))
            }
        }
        impl $trait<f64> for Var {
            type Output = Var;
            fn $method(self, rhs: f64) -> Var {
                $f(&self, &Var::new(rhs))
            }
        }
        impl $trait<&Var> for f64 {
            type Output = Var;
            fn $method(self, rhs: &Var) -> Var {
                $f(&Var::new(self), rhs)
            }
        }
        impl $trait<Var> for f64 {
            type Output = Var;
            fn $method(self, rhs: Var) -> Var {
                $f(&Var::new(self), &rhs)
            }
        }
    };
}

binary!(Add, add, add);
binary!(Sub, sub, sub);
binary!(Mul, mul, mul);
binary!(Div, div, div);

impl Neg for &Var {
    type Output = Var;
    fn neg(self) -> Var {
        Var::from_op(-self.value(), vec![(self.clone(), -1.0)])
    }
}

impl Neg for Var {
    type Output = Var;
    fn neg(self) -> Var {
        -&self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_books_examples() {
        let a = Var::new(3.0);
        let b = &a * 4.0;
        let c = &b + 3.0;
        c.backward();
        assert_eq!((a.grad(), b.grad(), c.value()), (4.0, 1.0, 15.0));

        let a = Var::new(3.0);
        let e = (&a * 4.0 + 3.0) * (&a + 2.0);
        e.backward();
        assert_eq!(a.grad(), 35.0);
    }

    #[test]
    fn a_node_used_twice_counts_once_per_use() {
        // The book's backward gives 6 here.
        let a = Var::new(5.0);
        let b = &a * 2.0;
        let c = &b + &b;
        c.backward();
        assert_eq!((a.grad(), b.grad()), (4.0, 2.0));
        // A diamond of shared nodes: d = (a·a)·(a·a), ∂d/∂a = 4a³.
        let a = Var::new(1.5);
        let s = &a * &a;
        let d = &s * &s;
        d.backward();
        assert!((a.grad() - 4.0 * 1.5f64.powi(3)).abs() < 1e-12);
    }

    #[test]
    fn backward_twice_accumulates_like_pytorch() {
        let a = Var::new(2.0);
        let y = &a * &a * 3.0; // ∂y/∂a = 6a = 12
        y.backward();
        y.backward();
        assert_eq!(a.grad(), 24.0);
        a.zero_grad();
        y.backward();
        assert_eq!(a.grad(), 12.0);
    }

    #[test]
    fn every_operation_against_a_central_difference() {
        let f = |x: &Var, y: &Var| -> Var {
            let u = (x * y - 2.0 / x + (-y).exp()) / (1.0 + y.powf(2.0));
            (u.tanh() + x.sigmoid() * 3.0 - y.ln() + 1.5 - x) * (x - 0.5)
        };
        let (x0, y0) = (0.7, 1.3);
        let (x, y) = (Var::new(x0), Var::new(y0));
        f(&x, &y).backward();
        let h = 1e-6;
        let at = |a: f64, b: f64| f(&Var::new(a), &Var::new(b)).value();
        let dx = (at(x0 + h, y0) - at(x0 - h, y0)) / (2.0 * h);
        let dy = (at(x0, y0 + h) - at(x0, y0 - h)) / (2.0 * h);
        assert!((x.grad() - dx).abs() < 1e-8, "{} vs {dx}", x.grad());
        assert!((y.grad() - dy).abs() < 1e-8, "{} vs {dy}", y.grad());
    }

    #[test]
    fn deep_graphs_do_not_overflow_the_stack() {
        let a = Var::new(1.0);
        let mut x = a.clone();
        for _ in 0..100_000 {
            x = &x * 1.0 + 0.0;
        }
        x.backward();
        assert_eq!(a.grad(), 1.0);
    }
}
