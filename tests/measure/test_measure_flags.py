"""The measuring-text flags are one pair in every command that measures (mof-export, mof-quantize,
mof-eval: measure/calibration.py add_measure_flags): the same spellings, the same minimum, the same
one-line error for a bad value."""

from pathlib import Path

import pytest

from mof.export import cli as export_cli
from mof.measure import eval_cli
from mof.measure.calibration import MIN_TOKENS
from mof.quant import cli as quant_cli

# each command with the arguments it needs besides the measuring flags
COMMANDS = {"mof-export": (export_cli, ["ckpt"]), "mof-quantize": (quant_cli, ["b.mof"]),
            "mof-eval": (eval_cli, ["b.mof"])}


@pytest.mark.parametrize("prog", COMMANDS)
@pytest.mark.parametrize("text_flag, tokens_flag", [("--text", "--tokens"),
                                                    ("--calibration-text", "--eval-tokens")])   # older names
def test_every_measuring_command_takes_the_same_flags(prog, text_flag, tokens_flag):
    module, needed = COMMANDS[prog]
    parser = module.build_parser()
    assert parser.prog == prog
    args = parser.parse_args(needed + [text_flag, "my.txt", tokens_flag, str(MIN_TOKENS)])
    assert args.text == Path("my.txt") and args.tokens == MIN_TOKENS


@pytest.mark.parametrize("bad", [str(MIN_TOKENS - 1), "0", "-5", "many", "2.5"])
def test_every_measuring_command_refuses_the_same_bad_values_in_one_line(bad, capsys):
    messages = set()
    for prog, (module, needed) in COMMANDS.items():
        with pytest.raises(SystemExit) as e:
            module.main(needed + ["--text", "my.txt", "--tokens", bad])
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith(f"{prog}: error: ")]
        assert e.value.code == 2 and len(errors) == 1 and "Traceback" not in err, err
        messages.add(errors[0].removeprefix(f"{prog}: error: "))
    assert messages == {f"argument --tokens/--eval-tokens: expected an integer >= {MIN_TOKENS}, got "
                        + (bad if bad.lstrip("-").isdigit() else repr(bad))}
