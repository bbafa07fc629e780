"""`mmgpt import-openflamingo`: build a model directory from OpenFlamingo / MultiModal-GPT releases."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the model room's sub-commands."""
    p = subparsers.add_parser(
        "import-openflamingo",
        help="build a model directory from HF CLIP + causal-LM dirs and an OpenFlamingo checkpoint.pt",
        description=(
            "Assemble OpenFlamingo from a Hugging Face CLIP (vision or full) directory and a causal-LM directory, "
            "load an OpenFlamingo checkpoint.pt (flat, model_state_dict-wrapped, module.-prefixed or v1 with alias "
            "keys) and optionally the MultiModal-GPT LoRA release, and write an mmgpt model directory. Every key is "
            "accounted for: an unplaceable key or a missing trained part is an error naming the keys."
        ),
    )
    p.add_argument("--vision-encoder", required=True, help="HF CLIPVisionModel or CLIPModel directory")
    p.add_argument("--lang-model", required=True, help="HF causal-LM directory (LLaMA, OPT, GPT-NeoX, MPT)")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory (default: --lang-model)")
    p.add_argument("--checkpoint", required=True, help="OpenFlamingo checkpoint.pt")
    p.add_argument("--lora", default=None, help="MultiModal-GPT LoRA release (mmgpt-lora-v0-release.pt)")
    p.add_argument(
        "--cross-attn-every-n-layers", type=int, default=4, help="OpenFlamingo-9B uses 4 (default)"
    )
    p.add_argument(
        "--media-attention",
        choices=["immediate", "openflamingo_v1"],
        default="immediate",
        help="token-to-image rule: OpenFlamingo 2.x (immediate) or v1, which the released MultiModal-GPT LoRA used",
    )
    p.add_argument(
        "--decoder-layers-attr", default=None, help="dotted path of the LM's layer list, if unusual"
    )
    sizes = p.add_argument_group("perceiver / cross-attention sizes (OpenFlamingo's defaults)")
    sizes.add_argument("--perceiver-depth", type=int, default=6)
    sizes.add_argument("--perceiver-heads", type=int, default=8)
    sizes.add_argument("--perceiver-dim-head", type=int, default=64)
    sizes.add_argument("--perceiver-num-latents", type=int, default=64)
    sizes.add_argument("--xattn-heads", type=int, default=8)
    sizes.add_argument("--xattn-dim-head", type=int, default=64)
    p.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default="float32",
        help="dtype of the written weights",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output model directory: new, empty, or an earlier model directory (which is replaced)",
    )
    p.set_defaults(func=_import_openflamingo)


def _import_openflamingo(args: argparse.Namespace) -> int:
    from mmgpt.model.checkpoints import import_openflamingo

    model = import_openflamingo(
        args.vision_encoder,
        args.lang_model,
        args.checkpoint,
        args.out,
        tokenizer=args.tokenizer,
        lora=args.lora,
        cross_attn_every_n_layers=args.cross_attn_every_n_layers,
        media_attention=args.media_attention,
        decoder_layers_attr=args.decoder_layers_attr,
        dtype=args.dtype,
        perceiver_depth=args.perceiver_depth,
        perceiver_heads=args.perceiver_heads,
        perceiver_dim_head=args.perceiver_dim_head,
        perceiver_num_latents=args.perceiver_num_latents,
        xattn_heads=args.xattn_heads,
        xattn_dim_head=args.xattn_dim_head,
    )
    total = model.num_parameters()
    print(f"wrote {args.out}: {total:,} parameters, media attention {model.config.media_attention}")
    return 0
