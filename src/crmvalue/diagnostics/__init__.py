"""Model-fit diagnostics for the BTYD purchase models and the Gamma-Gamma spend model.

The tables behind the model-fit figures of Fader, Hardie and Lee (2005a): weekly and
cumulative repeat-transaction tracking, the calibration-period frequency histogram, P(alive)
and expected-purchases matrices; and the fit of the Gamma-Gamma model to the observed average
spend (Fader, Hardie and Lee 2005b). Conditional expectations, the remaining figure, are
:func:`crmvalue.evaluation.conditional_expectations`.

Purchase models are duck-typed with the method names of ``lifetimes``:
``lifetimes.BetaGeoFitter``, ``ParetoNBDFitter``, ``ModifiedBetaGeoFitter`` (fitted or with
``params_`` set) and :class:`crmvalue.models.BetaGeoModel` all work. What is used:

- ``conditional_probability_alive(frequency, recency, T)`` and
  ``conditional_expected_number_of_purchases_up_to_time(t, frequency, recency, T)``, called on
  1-D arrays (lifetimes' Pareto/NBD versions do not broadcast beyond 1-D);
- ``expected_number_of_purchases_up_to_time(t)``;
- ``params_`` for P(X(t) = n): lifetimes' ``probability_of_n_purchases_up_to_time`` takes one
  scalar ``n`` and ``t``, overflows through ``gamma(r + n)`` for n > 170, and is missing from
  the Pareto/NBD fitter, so P(X(t) = n) is each registered model's own vectorised
  ``probability_of_n_purchases`` (:mod:`crmvalue.models.registry` lists the models).

Modules: ``models`` (which model, its parameters, P(X(t) = n)), ``tracking`` (tracking, period
transactions, matrices, :func:`fit_diagnostics`), ``spend`` (the Gamma-Gamma spend fit). The
figures are in :mod:`crmvalue.plots`.

Time is in the unit the model was fitted in (days, or weeks = days / 7).

References
----------
Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005a), "Counting Your Customers the Easy Way:
An Alternative to the Pareto/NBD Model", Marketing Science 24 (2), 275-284.
Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005b), "RFM and CLV: Using Iso-Value Curves
for Customer Base Analysis", Journal of Marketing Research 42 (4), 415-430.
Fader, P. S. and Hardie, B. G. S. (2005), "A Note on Deriving the Pareto/NBD Model and Related
Expressions", http://brucehardie.com/notes/009/.
Fader, P. S. and Hardie, B. G. S. (2020), "Deriving an Expression for P(X(t) = x) Under the
Pareto/NBD Model", http://brucehardie.com/notes/012/.
Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2008), "Computing P(alive) Using the BG/NBD
Model", http://brucehardie.com/notes/021/.
Fader, P. S. and Hardie, B. G. S. (2013), "The Gamma-Gamma Model of Monetary Value",
http://brucehardie.com/notes/025/.
Batislam, E. P., Denizel, M. and Filiztekin, A. (2007), "Empirical validation and comparison
of models for customer base analysis", International Journal of Research in Marketing 24 (3).
"""

from crmvalue.diagnostics.models import (
    ModelFamily,
    as_params,
    bgnbd_probability_of_n_purchases,
    expected_repeat_purchases,
    mbgnbd_probability_of_n_purchases,
    model_family,
    model_params,
    pareto_nbd_probability_of_n_purchases,
    probability_of_n_purchases,
    purchase_model_class,
)
from crmvalue.diagnostics.spend import gamma_gamma_spend_fit, spend_density
from crmvalue.diagnostics.tracking import (
    expected_purchases_matrix,
    fit_diagnostics,
    matrix_grid,
    p_alive_matrix,
    period_transactions,
    repeat_transactions_tracking,
)

__all__ = [
    "ModelFamily",
    "as_params",
    "bgnbd_probability_of_n_purchases",
    "expected_purchases_matrix",
    "expected_repeat_purchases",
    "fit_diagnostics",
    "gamma_gamma_spend_fit",
    "matrix_grid",
    "mbgnbd_probability_of_n_purchases",
    "model_family",
    "model_params",
    "p_alive_matrix",
    "pareto_nbd_probability_of_n_purchases",
    "period_transactions",
    "probability_of_n_purchases",
    "purchase_model_class",
    "repeat_transactions_tracking",
    "spend_density",
]
