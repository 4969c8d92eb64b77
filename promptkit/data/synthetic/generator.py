"""``make_synthetic_mosi``: the arguments resolved, the world drawn, each split rendered, the bundle assembled."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..dataset import SPLITS, DataBundle, MSADataset
from .features import _generate_split, _generate_split_v2, _modality_features
from .options import (
    _resolve_modalities,
    _resolve_per_modality,
    _resolve_sizes,
    _resolve_views,
)
from .shapes import (
    ALIGNED_LENS,
    DESCRIPTION,
    FEATURE_DIMS,
    MODALITIES,
    SOURCE_SIZES,
    SOURCE_SIZES_V1,
    TARGET_SIZES,
    UNALIGNED_LENS,
    VERSIONS,
)
from .tokens import DEFAULT_CODEBOOK_SIZE, check_text_form, make_codebook, quantize, vocab_size
from .views import EXTRA_FEATURE_DIM, VIEWS, VIEWS_V2, ModalityView
from .world import _add_extra_world, _extra_rng, _make_world, _make_world_v2
from .worlds import WORLDS, World, iemocap_labels, sims_labels, world_mixings, world_rng


def make_synthetic_mosi(
    seed: int = 0,
    aligned: bool = True,
    sizes: Sequence[int] | Mapping[str, int] | None = None,
    domain: str = "target",
    domain_shift: float = 0.2,
    seq_lens: Mapping[str, int] | None = None,
    feature_dims: Mapping[str, int] | None = None,
    version: int = 2,
    modalities: Sequence[str] | None = None,
    views: Mapping[str, ModalityView | Mapping[str, Any]] | None = None,
    text: str = "features",
    codebook_size: int = DEFAULT_CODEBOOK_SIZE,
    world: str | None = None,
) -> DataBundle:
    """Generate the synthetic data set; same arguments → same bytes (on one platform).

    Args:
        seed: seeds the world (mixing matrices) and the samples; the source and target
            domains of one seed share the world, so pre-train on one and adapt on the other.
        aligned: sequence lengths 50/50/50 (True) or 50/375/500 (False).
        sizes: ``(n_train, n_valid, n_test)`` or a dict by split; default 1284/229/686
            for the target domain; for the source domain CMU-MOSEI's 16326/1871/4659
            (version 2) or 2568/458/1372 (version 1).
        domain: ``"target"`` (CMU-MOSI-like) or ``"source"`` (larger pre-training domain).
        domain_shift: in [0, 1]; how far the target's mixing and noise move from the source's.
        seq_lens: override the lengths per modality (e.g. short sequences for fast tests); an
            extra modality defaults to the text's length.
        feature_dims: override the feature sizes per modality; an extra modality defaults to 16.
        version: the generative process, 2 (default) or 1 (the original one; same arguments
            give the same bytes as before version 2 existed, so old results can be regenerated).
        modalities: the modality names, in mask order (default text, audio, vision). Names other
            than those three are extra modalities (:mod:`promptkit.data.synthetic`, "Any modality set").
        views: modality → :class:`ModalityView` (or a dict of its fields) for extra modalities,
            or to replace a standard modality's view; default ``EXTRA_VIEW[version]``.
        text: ``"features"`` (default) or ``"tokens"``: the text as token ids ``(N, 3, T)``
            int64, each valid step's features replaced by the id of its nearest entry in a
            fixed codebook of the seed (:mod:`.tokens`); ``feature_dims["text"]`` is then the
            vocabulary size ``codebook_size + 3``. The other modalities are unchanged.
        codebook_size: K, the codebook's entries (``text="tokens"`` only).
        world: ``"mosei"`` (the source domain), ``"mosi"`` (the target domain: the same bytes as
            no world), ``"iemocap"`` or ``"sims"``: a target with that data set's feature sizes,
            split sizes and labels (:mod:`.worlds`); its source (``domain="source"``) is the MOSEI world.

    Returns:
        a regression :class:`DataBundle`; features ``(N, T_m, D_m)`` float32 (token text
        ``(N, 3, T)`` int64), labels ``(N,)``.
    """
    check_text_form(text, codebook_size)
    if world is not None and world not in WORLDS:
        raise ValueError(f"world must be one of {list(WORLDS)}, got {world!r}")
    if world == "mosei":
        domain = "source"
    elif world is not None and WORLDS[world] is not None and domain == "target":
        return _target_world(WORLDS[world], seed, aligned, sizes, domain_shift, seq_lens, feature_dims, version,
                             modalities, views, text)
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or int(version) not in VERSIONS:
        raise ValueError(f"version must be one of {list(VERSIONS)}, got {version!r}")
    version = int(version)
    if domain not in ("source", "target"):
        raise ValueError(f"domain must be 'source' or 'target', got {domain!r}")
    if not 0.0 <= float(domain_shift) <= 1.0:
        raise ValueError(f"domain_shift must lie in [0, 1], got {domain_shift}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    source_sizes = SOURCE_SIZES if version == 2 else SOURCE_SIZES_V1
    n_split = _resolve_sizes(sizes, TARGET_SIZES if domain == "target" else source_sizes)
    mods = _resolve_modalities(modalities)
    extras = tuple(m for m in mods if m not in MODALITIES)
    std_lens = ALIGNED_LENS if aligned else UNALIGNED_LENS
    lens = _resolve_per_modality(seq_lens, std_lens, "seq_lens", mods)
    lens = {**lens, **{m: int((seq_lens or {}).get(m, lens["text"])) for m in extras}}
    dims = _resolve_per_modality(feature_dims, FEATURE_DIMS, "feature_dims", mods)
    dims = {**dims, **{m: int((feature_dims or {}).get(m, EXTRA_FEATURE_DIM)) for m in extras}}
    mod_views = _resolve_views(views, mods, version)
    if text == "tokens" and "text" not in mods:
        raise ValueError(f"text='tokens' needs a 'text' modality; modalities are {list(mods)}")
    if codebook_size != DEFAULT_CODEBOOK_SIZE and text != "tokens":
        raise ValueError("codebook_size applies to text='tokens' only")

    world_seq, source_seq, target_seq = np.random.SeedSequence(int(seed)).spawn(3)
    world_rng = np.random.Generator(np.random.PCG64(world_seq))
    std_views = {m: mod_views.get(m, VIEWS[m]) for m in MODALITIES}  # the world's nuisance ranks/scales
    world = _make_world(world_rng, dims, std_views) if version == 1 else _make_world_v2(world_rng, dims, std_views)
    for m in extras:  # each from its own stream: the standard modalities' draws stay as they were
        _add_extra_world(world, m, _extra_rng(seed, m), dims[m], mod_views[m], version)
    theta = float(domain_shift) * np.pi / 2
    named = (*MODALITIES, *extras)
    if domain == "source":
        mixing, nuisance, noise_mult = world["W"], world["C"], 1.0
        split_seqs = source_seq.spawn(len(SPLITS))
    else:
        mixing = {m: np.cos(theta) * world["W"][m] + np.sin(theta) * world["W_alt"][m] for m in named}
        nuisance = {m: np.cos(theta) * world["C"][m] + np.sin(theta) * world["C_alt"][m] for m in named}
        noise_mult = 1.0 + float(domain_shift) / 2
        split_seqs = target_seq.spawn(len(SPLITS))

    # a standard modality that is left out is still drawn when a later one is kept (then dropped)
    last_std = max((MODALITIES.index(m) for m in mods if m in MODALITIES), default=-1)
    drawn = MODALITIES[: last_std + 1]
    offset = world.get("offset")
    codebook = None
    if text == "tokens":  # the source mixing: one codebook for both domains, like a tokenizer's vocabulary
        text_view = mod_views.get("text", (VIEWS if version == 1 else VIEWS_V2)["text"])
        codebook = make_codebook(seed, codebook_size, text_view, world["W"]["text"], world["C"]["text"],
                                 None if offset is None else offset["text"])
    vocab = {"text": vocab_size(codebook_size)} if codebook is not None else None
    splits = {}
    for i, (split, ss) in enumerate(zip(SPLITS, split_seqs)):
        rng = np.random.Generator(np.random.PCG64(ss))
        if version == 1:
            feats, labels, latents = _generate_split(rng, n_split[split], mixing, nuisance, noise_mult, lens, drawn,
                                                      mod_views)
        else:
            feats, labels, latents = _generate_split_v2(
                rng, n_split[split], mixing, nuisance, offset, noise_mult, lens, drawn, mod_views
            )
        for m in extras:
            extra_rng = _extra_rng(seed, m, (0 if domain == "source" else 1, i))
            z, times = latents
            feats[m] = _modality_features(extra_rng, z, times, mod_views[m], mixing[m], nuisance[m],
                                          None if offset is None else offset[m], noise_mult, lens[m])
        if codebook is not None:
            feats["text"] = quantize(feats["text"], codebook)
        splits[split] = MSADataset({m: feats[m] for m in mods}, labels, modalities=mods, vocab_sizes=vocab)

    kind = "aligned" if aligned else "unaligned"
    shift = f", domain_shift={domain_shift}" if domain == "target" else ""
    info = {"format": "synthetic", "version": version, "seed": int(seed), "domain": domain,
            "domain_shift": float(domain_shift), "aligned": bool(aligned)}
    described = ""
    if mods != MODALITIES or views:
        info["modalities"] = list(mods)
        described = f", modalities={'/'.join(mods)}"
        if views:
            info["views"] = {m: dict(vars(v)) for m, v in mod_views.items() if m in views}
            described += f" (views set for {'/'.join(m for m in mods if m in views)})"
    if codebook is not None:
        info.update(text="tokens", codebook_size=int(codebook_size))
        described += f", text as token ids (codebook of {int(codebook_size)})"
    return DataBundle(
        splits=splits,
        modalities=mods,
        feature_dims={m: (vocab or {}).get(m, dims[m]) for m in mods},
        seq_lens={m: lens[m] for m in mods},
        task="regression",
        out_dim=1,
        description=f"{DESCRIPTION}; generator v{version}, seed={seed}, domain={domain}{shift}, {kind}{described}",
        name=f"synthetic-mosi-{domain}",
        info=info,
    )


def _target_world(w: World, seed, aligned, sizes, domain_shift, seq_lens, feature_dims, version, modalities, views,
                  text) -> DataBundle:
    """A target world of its own feature space (:mod:`.worlds`): version 2's process with the world's
    mixings, sizes and labels; its streams are its own, so no other world's bytes change."""
    if int(version) != 2 or text != "features" or (modalities is not None and tuple(modalities) != MODALITIES):
        raise ValueError(f"world {w.name!r} is generator version 2 with text, audio and vision as features; "
                         f"got version={version!r}, text={text!r}, modalities={modalities!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not 0.0 <= float(domain_shift) <= 1.0:
        raise ValueError(f"domain_shift must lie in [0, 1], got {domain_shift}")
    n_split = _resolve_sizes(sizes, w.sizes)
    lens = _resolve_per_modality(seq_lens, ALIGNED_LENS if aligned else UNALIGNED_LENS, "seq_lens")
    dims = _resolve_per_modality(feature_dims, w.feature_dims, "feature_dims")
    mod_views = {**w.views, **_resolve_views(views, MODALITIES, 2)}
    mix = world_mixings(world_rng(seed, w.name), dims, mod_views)
    splits = {}
    for i, split in enumerate(SPLITS):
        rng = world_rng(seed, w.name, (i,))
        feats, sentiment, (z, _) = _generate_split_v2(rng, n_split[split], mix["W"], mix["C"], mix["offset"],
                                                      1.0 + float(domain_shift) / 2, lens, MODALITIES, mod_views)
        if w.label_kind == "iemocap":
            splits[split] = MSADataset(feats, iemocap_labels(rng, z, sentiment), modalities=MODALITIES)
        else:
            overall, unimodal = sims_labels(rng, z, sentiment, mod_views)
            splits[split] = MSADataset(feats, overall, modalities=MODALITIES)
            splits[split].unimodal_labels = {m: torch.as_tensor(v) for m, v in unimodal.items()}
    kind = "aligned" if aligned else "unaligned"
    info = {"format": "synthetic", "version": 2, "seed": int(seed), "world": w.name, "domain": "target",
            "domain_shift": float(domain_shift), "aligned": bool(aligned)}
    desc = DESCRIPTION.replace("CMU-MOSI shapes), NOT CMU-MOSI", f"{w.name.upper()}-like world), NOT {w.name.upper()}")
    return DataBundle(splits=splits, modalities=MODALITIES, feature_dims=dims, seq_lens=lens, task=w.task,
                      out_dim=w.out_dim, description=f"{desc}; generator v2, seed={seed}, world={w.name}, {kind}",
                      name=f"synthetic-{w.name}", info=info)
