"""Train-median baseline: scikit-learn's DummyRegressor, ignores the inputs."""

from sklearn.dummy import DummyRegressor

from harness import ModelContext


def make_model(ctx: ModelContext) -> DummyRegressor:
    return DummyRegressor(strategy="median")
