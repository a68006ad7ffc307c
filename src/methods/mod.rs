//! Training methods as plug-ins.
//!
//! A method is one file here plus one line in the [`methods!`] registry below. The file
//! holds the method's options (a serde struct, `deny_unknown_fields`) and implements two
//! traits: [`MethodSpec`], what the method is before any backend exists (its role, options,
//! checks, labels, deployed architecture), and [`Method`], how it trains through
//! [`MethodContext`]. Where a method changes the training step itself (mixing coefficients,
//! loss, the copies' step size) it hands the shared loop a
//! [`StepHooks`](crate::train::StepHooks) value; the loop, the claims and the figures need no
//! edit. `mk_annealed.rs` is a complete example in about a hundred lines.

pub mod adversarial;
pub mod baseline;
pub mod baseline_long;
mod context;
pub mod distill;
mod entry;
pub mod lr_over_k;
pub mod mk;
pub mod mk_annealed;
mod reuse;
mod spec;
pub mod submodular;
pub mod wide;

pub use context::{MethodContext, MethodOutput};
pub use entry::{EntryError, MethodEntry, split_nested_path};
pub use reuse::TrainedModels;
pub use spec::{Method, MethodInfo, MethodSpec, Role};

use burn::tensor::backend::AutodiffBackend;

use crate::error::Result;

/// Declares the registry: one `name => Type` line per method. Generates [`MethodConfig`]
/// (a method's typed options, one variant per method), [`NAMES`] and [`info`].
macro_rules! methods {
    ($($name:ident => $ty:ty),+ $(,)?) => {
        /// A method's typed options: one variant per registered method.
        #[derive(Debug, Clone)]
        #[allow(non_camel_case_types)]
        pub enum MethodConfig {
            $($name($ty),)+
        }

        /// Names of the registered methods, in registry order.
        pub const NAMES: &[&str] = &[$(stringify!($name)),+];

        /// The static facts of the method registered as `name`.
        pub fn info(name: &str) -> Option<MethodInfo> {
            match name {
                $(stringify!($name) => Some(<$ty as MethodSpec>::info()),)+
                _ => None,
            }
        }

        impl MethodConfig {
            /// The name the method is registered under (experiment files, result rows).
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$name(_) => stringify!($name),)+
                }
            }

            /// The static facts of this method.
            pub fn info(&self) -> MethodInfo {
                match self {
                    $(Self::$name(_) => <$ty as MethodSpec>::info(),)+
                }
            }

            /// The backend-free side of the method.
            pub fn spec(&self) -> &dyn MethodSpec {
                match self {
                    $(Self::$name(method) => method,)+
                }
            }

            /// Trains as the method does and returns the deployed model.
            pub fn run<B: AutodiffBackend>(
                &self,
                ctx: &MethodContext<'_, B>,
            ) -> Result<MethodOutput<B>> {
                match self {
                    $(Self::$name(method) => method.run(ctx),)+
                }
            }

            /// The method `name` with its options read from `options`.
            fn parse(
                name: &str,
                options: serde_norway::Mapping,
            ) -> std::result::Result<Self, EntryError> {
                match name {
                    $(stringify!($name) => entry::options::<$ty>(options).map(Self::$name),)+
                    _ => Err(EntryError::unknown_method(name)),
                }
            }
        }
    };
}

methods! {
    baseline => baseline::Baseline,
    baseline_long => baseline_long::BaselineLong,
    lr_over_k => lr_over_k::LrOverK,
    mk => mk::MajorityKernels,
    adv_mj => adversarial::AdvMajority,
    adv_only => adversarial::AdvOnly,
    wide => wide::Wide,
    distilled_ensemble => distill::DistilledEnsemble,
    submodular => submodular::Submodular,
    mk_annealed => mk_annealed::AnnealedMk,
}

/// The role of the method that stored a run, by name (`None` for a name the registry does not
/// know, e.g. a method removed since).
pub fn role_of(name: &str) -> Option<Role> {
    info(name).map(|i| i.role)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(yaml: &str) -> std::result::Result<MethodEntry, EntryError> {
        MethodEntry::from_value(&serde_norway::from_str(yaml).unwrap())
    }

    #[test]
    fn every_registered_method_parses_by_name_with_its_defaults() {
        for name in NAMES {
            let parsed = entry(name).unwrap();
            assert_eq!(parsed.method.name(), *name);
            assert!(!parsed.method.info().about.is_empty());
        }
    }

    #[test]
    fn methods_parse_from_names_and_mappings() {
        let m = entry("{name: mk, mixing: 'majority(3)', init: independent}").unwrap();
        assert_eq!(
            m.method.spec().mixing_label(4).as_deref(),
            Some("majority(3)")
        );
        assert_eq!(m.method.spec().init_label().as_deref(), Some("independent"));
        let m = entry("{name: mk, mixing: uniform, datasets: [mnist], k: [2, 4]}").unwrap();
        assert_eq!(m.datasets, Some(vec!["mnist".to_string()]));
        assert_eq!(m.k, Some(vec![2, 4]));
        let err = entry("{name: mk, mixin: uniform}").unwrap_err().to_string();
        assert!(err.contains("mixin"), "{err}");
        let err = entry("{name: mk, mixing: lottery}").unwrap_err();
        assert_eq!(err.at, "mixing");
        assert!(err.message.contains("lottery"), "{err}");
        let err = entry("sgd_plus").unwrap_err().to_string();
        assert!(
            err.contains("sgd_plus") && err.contains("baseline"),
            "{err}"
        );
        let err = entry("{name: mk, k: [two]}").unwrap_err();
        assert_eq!(err.at, "k");
    }

    #[test]
    fn roles_come_from_the_registry() {
        assert_eq!(role_of("baseline"), Some(Role::Baseline));
        assert_eq!(role_of("mk"), Some(Role::Proposed));
        assert_eq!(role_of("adv_mj"), Some(Role::Proposed));
        assert_eq!(role_of("lr_over_k"), Some(Role::Control));
        assert_eq!(role_of("distilled_ensemble"), Some(Role::Competitor));
        assert_eq!(role_of("wide"), Some(Role::Reference));
        assert_eq!(role_of("no_such_method"), None);
    }
}
