"""The catalogues (deeplabv3plus/catalog.py): each kind's names live there once, and everything else
reads them.

A name list written a second time anywhere in the package or its scripts (a tuple of backbone names,
a dict keyed by loss names, an if-chain on layout names) fails
``test_no_name_list_is_written_outside_the_catalogue``; every implementation an entry names resolves,
in the layer docs/architecture.md gives it.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

import deeplabv3plus
from deeplabv3plus import catalog
from deeplabv3plus.builders import MODEL_BUILDERS, bn_momenta
from deeplabv3plus.config import Config, ConfigError, DataConfig, LossConfig, load_config, trimap_band

PACKAGE = Path(deeplabv3plus.__file__).parent
SCRIPTS = PACKAGE.parent / "scripts"

VOCABULARIES = {
    "backbones": set(catalog.BACKBONES),
    "backbone families": set(catalog.BACKBONE_FAMILIES),
    "layouts": set(catalog.LAYOUTS),
    "losses": set(catalog.LOSSES),
    "mask formats": set(catalog.MASK_FORMATS),
    "predict formats": set(catalog.PREDICT_FORMATS),
    "TF name maps": set(catalog.TF_NAME_MAPS),
    "benchmark peers": set(catalog.BENCHMARK_PEERS),
    "synthetic kinds": set(catalog.SYNTHETIC.kinds),
    "label conventions": {c.name for layout in catalog.LAYOUTS.values() for c in layout.conventions},
}

# Where each kind's implementations must live (docs/architecture.md's layers).
REFERENCE_MODULES = {
    "builder": ("deeplabv3plus.builders",),
    "tf_name_map": ("deeplabv3plus.weights.tf_names",),
    "samples": ("deeplabv3plus.data.",),
    "class_names": ("deeplabv3plus.data.",),
    "palette": ("deeplabv3plus.data.",),
    "function": ("deeplabv3plus.losses",),
    "reader": ("deeplabv3plus.data.label_formats",),
    "path": ("deeplabv3plus.predict",),
}


def _references():
    for kind in (catalog.BACKBONE_FAMILIES, catalog.BACKBONES, catalog.LAYOUTS, catalog.LOSSES,
                 catalog.MASK_FORMATS, catalog.PREDICT_FORMATS):  # fmt: skip
        for name, entry in kind.items():
            for f in dataclasses.fields(entry):
                value = getattr(entry, f.name)
                if f.name in REFERENCE_MODULES and value is not None:
                    yield f"{type(entry).__name__}[{name!r}].{f.name}", f.name, value


@pytest.mark.parametrize(("where", "field", "reference"), list(_references()), ids=lambda v: str(v))
def test_every_catalogue_reference_resolves_to_a_function_in_its_layer(where, field, reference):
    module = reference.partition(":")[0]
    assert module.startswith(REFERENCE_MODULES[field]), (
        f"{where}: {reference} is not in {REFERENCE_MODULES[field]}"
    )
    obj = catalog.load(reference)
    assert callable(obj), where
    assert obj.__module__ == module, f"{where}: {reference} is a re-export of {obj.__module__}"


def _literal_strings(node: ast.AST) -> list[str]:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        items = node.elts
    elif isinstance(node, ast.Dict):
        items = [k for k in node.keys if k is not None]
    else:
        return []
    return [e.value for e in items if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def _compared_layout_names(node: ast.AST) -> list[str]:
    """The layout names in ``<...>.layout == "x"`` / ``layout in ("x", "y")``: a per-layout if-chain."""
    if not isinstance(node, ast.Compare):
        return []
    sides = [node.left, *node.comparators]
    names_layout = any(
        (isinstance(s, ast.Attribute) and s.attr == "layout")
        or (isinstance(s, ast.Name) and s.id == "layout")
        for s in sides
    )
    if not names_layout:
        return []
    found = []
    for side in sides:
        if isinstance(side, ast.Constant) and isinstance(side.value, str):
            found.append(side.value)
        found += _literal_strings(side)
    return [n for n in found if n in catalog.LAYOUTS]


def name_lists(path: Path) -> list[str]:
    """Where ``path`` writes two or more names of one catalogue in one literal, or compares a layout by name."""
    found = []
    tree = ast.parse(path.read_text())
    exports = {  # __all__ lists function names (cross_entropy, ...), not a vocabulary
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    }
    for node in ast.walk(tree):
        strings = set(_literal_strings(node)) if id(node) not in exports else set()
        for kind, names in VOCABULARIES.items():
            if len(strings & names) >= 2:
                found.append(f"{path.name}:{node.lineno} lists {kind} {sorted(strings & names)}")
        compared = _compared_layout_names(node)
        if compared:
            found.append(f"{path.name}:{node.lineno} branches on layout {compared}")
    return found


def test_no_name_list_is_written_outside_the_catalogue():
    files = [p for p in PACKAGE.rglob("*.py") if p.name != "catalog.py"] + sorted(SCRIPTS.glob("*.py"))
    assert [hit for path in sorted(files) for hit in name_lists(path)] == []


def test_the_name_list_finder_finds_a_planted_list_and_a_planted_if_chain(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(
        'LOSS_NAMES = ("cross_entropy", "ohem")\n'
        'def palette(cfg):\n    return 1 if cfg.data.layout == "cityscapes" else 0\n'
    )
    assert name_lists(planted) == [
        "planted.py:1 lists losses ['cross_entropy', 'ohem']",
        "planted.py:3 branches on layout ['cityscapes']",
    ]


def test_every_backbone_builder_is_public_in_the_package_and_on_torch_hub():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", PACKAGE.parent / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    for entry in catalog.BACKBONES.values():
        name = entry.builder.partition(":")[2]
        assert name in deeplabv3plus.__all__ and name in hubconf.__all__, name
        assert getattr(hubconf, name) is getattr(deeplabv3plus, name) is MODEL_BUILDERS[entry.name]


def test_the_builders_are_the_catalogues_backbones_and_bn_momenta_come_from_the_family():
    assert list(MODEL_BUILDERS) == list(catalog.BACKBONES)
    for name, entry in catalog.BACKBONES.items():
        assert MODEL_BUILDERS[name] is getattr(deeplabv3plus, entry.builder.partition(":")[2])
        family = catalog.BACKBONE_FAMILIES[entry.family]
        assert bn_momenta(name, "reference") == family.reference_bn_momentum
        assert inspect.signature(MODEL_BUILDERS[name]).parameters.keys() >= set(family.options)


def test_each_option_group_of_the_config_belongs_to_one_catalogue_entry():
    loss_groups = {
        f.name: f.type for f in dataclasses.fields(LossConfig) if f.name not in ("name", "class_weights")
    }
    assert loss_groups.keys() == {n for n, e in catalog.LOSSES.items() if e.options is not None}
    for name in loss_groups:
        assert type(getattr(LossConfig(), name)) is catalog.LOSSES[name].options
    data_groups = {
        f.name
        for f in dataclasses.fields(DataConfig)
        if dataclasses.is_dataclass(getattr(DataConfig(), f.name))
    }
    owners = {e.options for e in catalog.MASK_FORMATS.values() if e.options} | {
        e.options for e in catalog.LAYOUTS.values() if e.options
    }
    assert data_groups == owners


@pytest.mark.parametrize("layout", sorted(catalog.LAYOUTS))
def test_the_trimap_band_default_is_the_layouts_entry(layout):
    cfg = Config()
    cfg.data.layout = layout
    assert trimap_band(cfg) == catalog.LAYOUTS[layout].trimap_band


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["train.loss.ohem.thresh=0.5"], ("train.loss.ohem.thresh", "train.loss.name=ohem only")),
        (
            ["train.loss.name=lovasz_softmax", "train.loss.lovasz_softmax.classes=some"],
            ("train.loss.lovasz_softmax.classes",),
        ),
        (
            ["data.layout=folders", "data.coco.unmapped=error"],
            ("data.coco.unmapped", "data.mask_format=coco only"),
        ),
        (["data.synthetic.kind=stripes"], ("data.synthetic.kind", "texture, colour")),
        (
            ["model.backbone=xception65", "model.resnet_variant=beta"],
            ("model.resnet_variant", "resnet backbones only"),
        ),
        (["data.layout=nope"], ("data.layout", "voc, voc_aug, folders")),
        (["model.backbone=mobilenetv2", "model.depth_multiplier=0"], ("model.depth_multiplier", "> 0")),
        (["model.resnet_variant=gamma"], ("model.resnet_variant", "standard or beta")),
    ],
)
def test_an_option_is_checked_by_its_catalogue_entry_when_the_config_loads(overrides, words):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    assert all(w in str(info.value) for w in words), str(info.value)


DOCS = PACKAGE.parent / "docs"


@pytest.mark.parametrize(
    ("page", "names"),
    [
        ("datasets.md", catalog.LAYOUTS),
        ("own_data.md", catalog.LOSSES),
        ("own_data.md", catalog.MASK_FORMATS),
        ("evaluation.md", catalog.PREDICT_FORMATS),
    ],
)
def test_the_docs_page_of_each_catalogue_documents_every_entry(page, names):
    text = (DOCS / page).read_text()
    assert [name for name in names if f"`{name}`" not in text and f"`{name} " not in text] == []


@pytest.mark.parametrize(
    ("layout", "convention"),
    [
        (name, convention)
        for name, entry in catalog.LAYOUTS.items()
        for convention in ([c.name for c in entry.conventions] or [None])
        if entry.implied_classes(convention) is not None
    ],
)
def test_the_classes_a_layout_implies_are_as_many_as_its_class_names(layout, convention):
    from deeplabv3plus.data.datasets import check_layout_classes, dataset_class_names

    implied = catalog.LAYOUTS[layout].implied_classes(convention)
    cfg = DataConfig(
        layout=layout, label_convention=convention, num_classes=implied[0], ignore_index=implied[1]
    )
    assert len(dataset_class_names(cfg)) == implied[0]
    check_layout_classes(cfg)
    cfg.num_classes += 1
    with pytest.raises(
        ValueError, match=f"layout '{layout}'.* has {implied[0]} classes and ignore index {implied[1]}"
    ):
        check_layout_classes(cfg)
