"""The collections registry: registry.json, generated from the collections in the checkout.

    from plait.registry import build_registry, check_registry, load_registry

    build_registry()                 # plait registry build: writes <repo>/registry.json
    check_registry().ok              # plait registry check: is the committed file current?
    build_wheelhouse(root, out)      # plait collection build: sdists, wheels, index.json
    load_registry().registry         # what plait collection ls/info/install read

Building imports each collection's plugin module (in a child interpreter, from the
collection's own directory); loading and listing never import plugin code. The schema of
the document is ``plait.registry.Registry``; see docs/collections/index.md.
"""

from plait.registry._build import build_document, build_registry, describe_collection, find_repo_root, render
from plait.registry._check import CheckResult, check_registry, diff_documents
from plait.registry._install import (
    collection_status,
    collection_statuses,
    find_collection,
    install_outcome,
    install_plan,
    supports,
)
from plait.registry._model import (
    SCHEMA_VERSION,
    Artifact,
    BlockEntry,
    Builtin,
    CallableEntry,
    Collection,
    LoadedRegistry,
    Registry,
    RegistryError,
    load_registry,
    parse_registry,
    validate_document,
)
from plait.registry._scaffold import scaffold_collection
from plait.registry._tested import read_tested_with, record_pass
from plait.registry._wheelhouse import build_project, build_wheelhouse, find_artifact, read_index

__all__ = [
    "SCHEMA_VERSION",
    "Artifact",
    "build_project",
    "build_wheelhouse",
    "describe_collection",
    "find_artifact",
    "install_outcome",
    "read_index",
    "read_tested_with",
    "record_pass",
    "scaffold_collection",
    "BlockEntry",
    "Builtin",
    "CallableEntry",
    "CheckResult",
    "Collection",
    "LoadedRegistry",
    "Registry",
    "RegistryError",
    "build_document",
    "build_registry",
    "check_registry",
    "collection_status",
    "collection_statuses",
    "diff_documents",
    "find_collection",
    "find_repo_root",
    "install_plan",
    "load_registry",
    "parse_registry",
    "render",
    "supports",
    "validate_document",
]
