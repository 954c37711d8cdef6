import pytest

from tests.loaders.fakes import FakeCustomerIo, FakeMetaGraph, FakePinterest, FakeWebhookReceiver


class SleepRecorder:
    """Injected as the loaders' sleep: records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


def _serve(fake):
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def pinterest():
    yield from _serve(FakePinterest())


@pytest.fixture
def customerio():
    yield from _serve(FakeCustomerIo())


@pytest.fixture
def meta_graph():
    yield from _serve(FakeMetaGraph())


@pytest.fixture
def webhook_receiver():
    yield from _serve(FakeWebhookReceiver())
