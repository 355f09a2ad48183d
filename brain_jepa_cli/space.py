"""`brain-jepa space create`: a Hugging Face Space folder with the demo of a model, optionally pushed."""

from __future__ import annotations

import sys

from .options import HelpFormatter, add_argument


EXAMPLES = """\
examples:
  # a Space for a Hub model: the Space loads the model from the Hub and links to it
  brain-jepa space create --model your-name/brain-jepa-age --output-dir spaces/age-demo

  # a local fine-tuned folder, copied into the Space, pushed as your-name/age-demo
  brain-jepa space create --model runs/finetune-age --output-dir spaces/age-demo --push-to-hub your-name/age-demo

  # ... and add a "Try it" link to the model's card (the folder's README.md, or a commit to the Hub repo)
  brain-jepa space create --model your-name/brain-jepa-age --output-dir spaces/age-demo \\
      --push-to-hub your-name/age-demo --link-model-card
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "space",
        help="Hugging Face Space with the demo of a model",
        description="Hugging Face Spaces for Brain-JEPA models.",
    )
    actions = parser.add_subparsers(dest="space_command", metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="write (and push) a Space folder for a model",
        description="Write a complete Space folder (app.py, README.md with Spaces front matter, requirements.txt "
        "pinned to this package's version) for the demo of a model folder or Hub id, check it, and optionally push "
        "it with huggingface_hub.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    create.add_argument("--model", required=True, help="model folder or Hub id")
    add_argument(create, "--output-dir", required=True, help="Space folder to write")
    add_argument(
        create,
        "--model-repo",
        default=None,
        help="Hub id of a local --model folder: the Space loads it from there instead of a copy",
    )
    create.add_argument("--title", default=None, help="page title (default: 'Brain-JEPA demo: <model name>')")
    add_argument(
        create,
        "--push-to-hub",
        default=None,
        metavar="SPACE_ID",
        help="push the folder to this Space ('user/name'), creating it if needed",
    )
    create.add_argument("--private", action="store_true", help="create the Space as private")
    add_argument(
        create,
        "--link-model-card",
        action="store_true",
        help="with --push-to-hub: add a link to the Space to the model's card",
    )
    create.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    create.add_argument("--debug", action="store_true", help="show tracebacks")
    create.set_defaults(func=run_create)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run_create(args) -> int:
    from brain_jepa_hf.space import create_space, link_model_card_to_space, push_space_to_hub, space_url

    if args.link_model_card and not args.push_to_hub:
        print("brain-jepa space create: error: --link-model-card: needs --push-to-hub SPACE_ID", file=sys.stderr)
        return 2
    try:
        folder = create_space(
            args.model, args.output_dir, model_repo=args.model_repo, title=args.title, overwrite=args.overwrite
        )
        print(f"wrote the Space folder {folder}")
        if args.push_to_hub:
            push_space_to_hub(folder, args.push_to_hub, private=args.private or None)
            print(f"pushed to {space_url(args.push_to_hub)}")
            if args.link_model_card:
                print(f"linked the Space from {link_model_card_to_space(args.model, args.push_to_hub)}")
    except (ValueError, OSError, ImportError) as err:
        if args.debug:
            raise
        print(f"brain-jepa space create: error: {err}", file=sys.stderr)
        return 1
    return 0
