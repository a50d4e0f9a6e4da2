"""``seo-export convert``: a local Hugging Face checkpoint -> a zoo config, weights and a conversion record."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="HF_DIR",
                        help="local Hugging Face checkpoint directory (config.json, model.safetensors); "
                             "BERT, RoFormer or Longformer; nothing is downloaded")
    parser.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                        help="writes config.json, model.safetensors, the tokenizer files and conversion.json "
                             "(the whole directory atomically)")
    parser.add_argument("--encoder-only", action="store_true",
                        help="convert a task model's encoder and drop its head (recorded); without it a head "
                             "the zoo cannot represent is refused")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists and is not empty")


def run(args: argparse.Namespace) -> int:
    from seo_export.convert import convert_hf

    result = convert_hf(args.checkpoint, args.output, encoder_only=args.encoder_only, overwrite=args.overwrite)
    config, source = result.config, result.record["source"]
    dropped = sum(group["count"] for group in result.record["dropped"])
    print(f"converted {source['model_type']} ({', '.join(source['architectures'] or ['?'])}) -> {args.output}: "
          f"{config.num_layers} layers, {config.attention_type} attention, {config.positional_encoding_type} "
          f"positions; {len(result.state_dict)} zoo tensors, {dropped} checkpoint tensors dropped "
          f"(see {args.output}/conversion.json)")
    for note in result.record["notes"]:
        print(f"note: {note}")
    print(f"next: seo-export export --config {args.output}/config.json --checkpoint {args.output}/model.safetensors "
          "-o model.onnx")
    return 0
