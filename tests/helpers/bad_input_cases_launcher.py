"""Bad ``lhsfed-train`` inputs the launcher must refuse before the runtime starts: each is
(argv after ``lhsfed-train``, text the last line of stderr must hold). Shared with the
bad-input corpus (tests/unit/test_bad_inputs.py) as plain data.

``{tmp}`` in an argument is the test's own folder; ``{tmp}/afile`` is a regular file there.
"""

from __future__ import annotations

CASES: list[tuple[list[str], str]] = [
    (["federation.num_nodes=10"], "federation.num_nodes=10: the dataset uci_heart has 4 sites"),
    (["federation.num_nodes=0"], "set federation.num_nodes between 1 and 4"),
    (
        ["+data.strict_vaules=true"],
        "data.strict_vaules: unknown key in the dataset spec; did you mean 'strict_values'?",
    ),
    (["+data.label.colum=num"], "data.label.colum: unknown key in the dataset spec; did you mean 'column'?"),
    (
        ["+data.split.test_fracton=0.2"],
        "data.split.test_fracton: unknown key in the dataset spec; did you mean 'test_fraction'?",
    ),
    (
        ["federation.runtime=spark"],
        "federation.runtime 'spark' is unknown; choose one of ('ray', 'inprocess')",
    ),
    (["rounds=abc"], "rounds='abc' is not a whole number"),
    (["rounds=2.5"], "rounds=2.5 is not a whole number"),
    (["seed=x1"], "seed='x1' is not a whole number"),
    (["privacy.target_epsilon=abc"], "privacy.target_epsilon='abc' is not a finite number"),
    (["privacy.target_epsilon=inf"], "privacy.target_epsilon=inf is not a finite number"),
    (["train.batch_size=many"], "train.batch_size='many' is not a whole number"),
    (["federation.client_cpus=x"], "federation.client_cpus='x' is not a finite number"),
    (["federation.ray_address=127.0.0.1:1"], "federation.ray_address=127.0.0.1:1: no Ray head answers there"),
    (
        ["federation.ray_address=ray://head:10001"],
        "federation.ray_address='ray://head:10001' is not HOST:PORT",
    ),
    (
        ["federation.runtime=inprocess", "federation.ray_address=127.0.0.1:1"],
        "which federation.runtime=inprocess does not use: set federation.runtime=ray",
    ),
    (["strategy.min_train_nodes=two"], "strategy.min_train_nodes='two' is not a whole number"),
    (
        ["strategy.min_train_nodes=10"],
        "strategy.min_train_nodes=10: the simulated nodes are 4, so no round could ever start",
    ),
    (
        ["strategy.min_evaluate_nodes=5", "strategy.min_available_nodes=9"],
        "strategy.min_evaluate_nodes=5, strategy.min_available_nodes=9: the simulated nodes are 4",
    ),
    (
        ["federation.num_nodes=2", "strategy.min_train_nodes=3"],
        "set strategy.min_train_nodes to at most 2",
    ),
    (
        ["federation=deployment", "superlink=127.0.0.1:1", "strategy.min_train_nodes=5"],
        "strategy.min_train_nodes=5: the dataset's sites (one node each) are 4",
    ),
    (
        ["hydra.run.dir={tmp}/afile/run"],
        "the run folder cannot be created ({tmp}/afile is not a folder); choose another hydra.run.dir",
    ),
    (["federation.data_dir={tmp}/nowhere"], "{tmp}/nowhere/processed.cleveland.data: data file not found"),
    (["resume={tmp}/nowhere"], "{tmp}/nowhere/.hydra/config.yaml does not exist"),
    (["init={tmp}/nowhere"], "init {tmp}/nowhere: {tmp}/nowhere not found: init= takes a finished run"),
    (
        ["federation=deployment", "+federation.client_app=tests.helpers.faulty_client:app"],
        "federation.client_app applies to simulated sites only",
    ),
]
