"""Every entry point configures the explainer with one QuboOptions: the CLI's flags, the callback, the Quantus
adapter and the explainer itself agree, field by field, and reject the same bad values."""
import numpy as np
import pytest

from captum_qubo.attribution import QuboFeatureMapAttribution
from captum_qubo.attribution.options import QuboOptions
from captum_qubo.baselines import LayerGradCamPlusPlus, LayerScoreCam
from captum_qubo.cli.explain import _parse_explain
from captum_qubo.cli.qubo_arguments import qubo_options
from captum_qubo.integrations.quantus import explain
from lightning_callbacks import QuboExplanationCallback

CHOSEN = QuboOptions(sampler="tabu", sampler_kwargs={"num_reads": 2}, formulation="k_hot", k=3, beta=0.4, seed=9,
                     max_variables=12)


def test_the_cli_flags_build_the_same_options():
    args = _parse_explain(["--sample", "chelsea", "--sampler", "tabu", "--sampler-kwargs", '{"num_reads": 2}',
                           "--formulation", "k_hot", "--k", "3", "--beta", "0.4", "--seed", "9",
                           "--max-variables", "12"])
    assert qubo_options(args) == CHOSEN
    assert qubo_options(_parse_explain(["--sample", "chelsea"])) == QuboOptions()  # same defaults


def test_the_cli_spells_the_librarys_defaults_and_choices():
    """The flags are spelled out (no torch at --help); they must stay the library's own."""
    from captum_qubo.cli import qubo_arguments
    from captum_qubo.formulation.importance import IMPORTANCES
    from captum_qubo.formulation.qubo import PAIR_CONVENTIONS

    defaults = QuboOptions()
    assert (qubo_arguments.DEFAULT_IMPORTANCE, qubo_arguments.DEFAULT_BETA) == (defaults.importance, defaults.beta)
    assert qubo_arguments.IMPORTANCE_CHOICES == IMPORTANCES
    assert qubo_arguments.PAIR_CONVENTION_CHOICES == PAIR_CONVENTIONS
    paper = _parse_explain(["--sample", "chelsea", "--importance", "gradient", "--beta", "0.7"])
    assert qubo_options(paper) == QuboOptions.preset("paper")
    contrastive = _parse_explain(["--sample", "chelsea", "--importance", "contrastive", "--pair-convention",
                                  "full_unit_diagonal"])
    assert qubo_options(contrastive) == QuboOptions(importance="contrastive", pair_convention="full_unit_diagonal")


def test_the_callback_takes_options_or_fields(digits_model):
    by_object = QuboExplanationCallback("model.reduce", options=CHOSEN)
    by_fields = QuboExplanationCallback("model.reduce", sampler="tabu", sampler_kwargs={"num_reads": 2},
                                        formulation="k_hot", k=3, beta=0.4, seed=9, max_variables=12)
    assert by_object.options == by_fields.options == CHOSEN
    assert QuboExplanationCallback("model.reduce", options=CHOSEN, beta=0.9).options == CHOSEN.replace(beta=0.9)
    assert by_object.seed == 9  # the options' seed also chooses the samples
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\]"):
        QuboExplanationCallback("model.reduce", beta=1.5)


def test_the_quantus_adapter_uses_the_options_it_is_given(digits_model, digits_data):
    _, _, x_test, y_test = digits_data
    x, y = x_test[:3], y_test[:3]
    options = QuboOptions(sampler="exact", formulation="k_hot", k=2)
    maps = explain(model=digits_model, inputs=x.numpy(), targets=y.numpy(), layer="reduce", options=options)
    direct = QuboFeatureMapAttribution(digits_model, digits_model.reduce, options=options)
    expected = direct.attribute(x, target=y).detach().numpy()  # 8x8 layer = 8x8 input: no upsampling
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    assert all(selection.num_selected == 2 for selection in direct.last_selections)
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\]"):
        explain(model=digits_model, inputs=x.numpy(), targets=y.numpy(), layer="reduce", beta=1.5)


@pytest.mark.parametrize("method, cls", [("grad_cam_plus_plus", LayerGradCamPlusPlus), ("score_cam", LayerScoreCam)])
def test_the_quantus_adapter_runs_the_other_baselines(digits_model, digits_data, method, cls):
    _, _, x_test, y_test = digits_data
    x, y = x_test[:3], y_test[:3]
    maps = explain(model=digits_model, inputs=x.numpy(), targets=y.numpy(), layer="reduce", method=method)
    expected = cls(digits_model, digits_model.reduce).attribute(x, target=y, relu_attributions=True)
    np.testing.assert_allclose(maps, expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert maps.shape == (3, 1, 8, 8)
