import logging

import pytest

from fixtures_data import items
from mmrl.data.items import Item
from mmrl.data.subsample import subsample_classes
from mmrl.errors import ConfigError

# docs/protocol.md#base-and-new-classes: classes -> (base, new)
COUNTS = {"ImageNet": (1000, 500, 500), "Caltech101": (100, 50, 50), "OxfordPets": (37, 19, 18),
          "StanfordCars": (196, 98, 98), "Flowers102": (102, 51, 51), "Food101": (101, 51, 50),
          "FGVCAircraft": (100, 50, 50), "SUN397": (397, 199, 198), "DTD": (47, 24, 23),
          "EuroSAT": (10, 5, 5), "UCF101": (101, 51, 50)}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_class_counts(name):
    n, base, new = COUNTS[name]
    train = [Item(f"/x/{c}", c, f"c{c}") for c in range(n)]
    (b,) = subsample_classes(train, subsample="base")
    (w,) = subsample_classes(train, subsample="new")
    assert len({it.label for it in b}) == base and len({it.label for it in w}) == new
    assert max(it.label for it in w) == new - 1


def test_relabel_order_and_first_list_decides(caplog):
    train = items("t3", 3, 2) + items("t0", 0, 2) + items("t1", 1, 1) + items("t2", 2, 1)
    val = items("v2", 2, 1) + items("v9", 9, 1) + items("v0", 0, 1)   # label 9 is not in train
    test = items("s1", 1, 1) + items("s3", 3, 1)
    with caplog.at_level(logging.INFO, logger="mmrl.data"):
        tr, va, te = subsample_classes(train, val, test, subsample="new")
    assert "SUBSAMPLE NEW CLASSES!" in caplog.text
    assert [(it.label, it.classname) for it in tr] == [(1, "class3"), (1, "class3"), (0, "class2")]
    assert [(it.label, it.classname) for it in va] == [(0, "class2")]     # label 9 dropped
    assert [it.label for it in te] == [1]
    tr, va, te = subsample_classes(train, val, test, subsample="base")
    assert [it.label for it in tr] == [0, 0, 1] and [it.classname for it in tr] == ["class0", "class0", "class1"]
    assert [it.impath for it in va] == ["/d/v0_00"]


def test_all_is_identity_and_none_lists_kept():
    train = items("a", 0, 2)
    assert subsample_classes(train, None, subsample="all") == [train, None]
    assert subsample_classes(train, None, subsample="base")[1] is None


def test_bad_mode():
    with pytest.raises(ConfigError, match="SUBSAMPLE_CLASSES"):
        subsample_classes([], subsample="novel")
