"""CloudFormation intrinsics and the template loader: each function, conditions,
parameters, pseudo parameters, short forms, and the bounds that keep a hostile template
from looping or growing without end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.importing.cfnyaml import parse_template
from bridge.importing.context import TemplateContext
from bridge.importing.intrinsics import NO_VALUE, ResourceValue
from bridge.importing.model import ImportOptions
from bridge.importing.notes import Notes, TemplateError

TEMPLATE = """\
Parameters:
  Stage: {Type: String, Default: dev, AllowedValues: [dev, prod]}
  Zones: {Type: CommaDelimitedList, Default: "a,b,c"}
  Size: {Type: Number, Default: 3}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  IsDev: !Not [!Condition IsProd]
  Both: !And [!Condition IsDev, !Equals [!Ref Size, 3]]
  Either: !Or [!Condition IsProd, !Condition Both]
Mappings:
  Sizes:
    dev: {Memory: 128}
    prod: {Memory: 1024}
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties: {QueueName: !Sub "${AWS::StackName}-${Stage}-q"}
  Fifo: {Type: AWS::SQS::Queue, Properties: {FifoQueue: true}}
  Stream: {Type: AWS::Kinesis::Stream}
  Table: {Type: AWS::DynamoDB::Table, Properties: {TableName: tickets}}
  Topic: {Type: AWS::SNS::Topic}
  Fn: {Type: AWS::Serverless::Function}
"""


def context(text: str = TEMPLATE, **options: Any) -> TemplateContext:
    template = parse_template(text, Path("template.yaml"))
    notes = Notes(Path("template.yaml"), template.lines)
    return TemplateContext(template, ImportOptions(**options), notes)


def resolve(value: Any, **options: Any) -> Any:
    return context(**options).resolve(value, ("Resources", "X", "Properties", "Y"))


def test_ref_of_parameters_pseudo_parameters_and_resources() -> None:
    assert resolve({"Ref": "Stage"}) == "dev"
    assert resolve({"Ref": "Stage"}, parameter_overrides={"Stage": "prod"}) == "prod"
    assert resolve({"Ref": "Zones"}) == ["a", "b", "c"]
    assert resolve({"Ref": "Size"}) == "3"
    assert resolve({"Ref": "AWS::Region"}, region="eu-west-1") == "eu-west-1"
    assert resolve({"Ref": "AWS::AccountId"}, account_id="123456789012") == "123456789012"
    assert resolve({"Ref": "AWS::StackName"}, stack_name="shop") == "shop"
    assert resolve({"Ref": "Queue"}, stack_name="shop", account_id="123456789012") == (
        "https://sqs.us-east-1.amazonaws.com/123456789012/shop-dev-q"
    )
    assert resolve({"Ref": "Queue"}, endpoint_url="http://127.0.0.1:5000", account_id="1" * 12) == (
        "http://127.0.0.1:5000/111111111111/local-dev-q"
    )
    assert resolve({"Ref": "Stream"}) == "local-Stream"
    assert resolve({"Ref": "Topic"}) == "arn:aws:sns:us-east-1:000000000000:local-Topic"
    assert resolve({"Ref": "Fn"}) == "Fn"
    assert resolve({"a": {"Ref": "AWS::NoValue"}, "b": [1, {"Ref": "AWS::NoValue"}]}) == {"b": [1]}
    assert resolve({"Ref": "AWS::NoValue"}) is NO_VALUE


def test_get_att_of_declared_resources_carries_where_it_came_from() -> None:
    arn = resolve({"Fn::GetAtt": ["Fifo", "Arn"]})
    assert arn == "arn:aws:sqs:us-east-1:000000000000:local-Fifo.fifo"
    assert isinstance(arn, ResourceValue) and (arn.logical_id, arn.attribute) == ("Fifo", "Arn")
    assert (
        resolve({"Fn::GetAtt": "Stream.Arn"})
        == "arn:aws:kinesis:us-east-1:000000000000:stream/local-Stream"
    )
    stream = resolve({"Fn::GetAtt": ["Table", "StreamArn"]})
    assert stream.attribute == "StreamArn" and stream.logical_id == "Table"
    assert resolve({"Fn::GetAtt": ["Queue", "QueueName"]}) == "local-dev-q"
    assert (
        resolve({"Fn::GetAtt": ["Fn", "Arn"]})
        == "arn:aws:lambda:us-east-1:000000000000:function:Fn"
    )


def test_sub_join_select_split_find_in_map_and_others() -> None:
    assert resolve({"Fn::Sub": "${AWS::Region}/${Stage}/${Queue.QueueName}/${!Literal}"}) == (
        "us-east-1/dev/local-dev-q/${Literal}"
    )
    assert resolve({"Fn::Sub": ["${A}-${Stage}", {"A": {"Ref": "Size"}}]}) == "3-dev"
    assert resolve({"Fn::Join": [",", ["a", {"Ref": "Stage"}, 3]]}) == "a,dev,3"
    assert resolve({"Fn::Select": [1, {"Ref": "Zones"}]}) == "b"
    assert resolve({"Fn::Select": ["2", {"Fn::Split": ["-", "x-y-z"]}]}) == "z"
    assert resolve({"Fn::FindInMap": ["Sizes", {"Ref": "Stage"}, "Memory"]}) == 128
    assert resolve({"Fn::FindInMap": ["Sizes", "test", "Memory", {"DefaultValue": 64}]}) == 64
    assert resolve({"Fn::Base64": "hi"}) == "aGk="
    assert resolve({"Fn::GetAZs": ""}, region="eu-west-1") == [
        "eu-west-1a",
        "eu-west-1b",
        "eu-west-1c",
    ]
    assert resolve({"Fn::Length": [1, 2, 3]}) == 3
    assert resolve({"Fn::ToJsonString": {"a": [1, {"Ref": "Stage"}]}}) == '{"a":[1,"dev"]}'


def test_conditions_and_if() -> None:
    value = {"Fn::If": ["IsProd", "big", "small"]}
    assert resolve(value) == "small"
    assert resolve(value, parameter_overrides={"Stage": "prod"}) == "big"
    made = context()
    assert made.resolver.condition("Both", ()) is True
    assert made.resolver.condition("Either", ()) is True
    assert resolve({"Fn::If": ["IsDev", {"Ref": "AWS::NoValue"}, 1]}) is NO_VALUE


def test_short_forms_load_into_long_forms_with_lines() -> None:
    text = "A: !Ref X\nB: !GetAtt Q.Arn\nC: !Sub 'x'\nD: !If [C, 1, 2]\nE: !Select [0, !Split [',', 'a,b']]\n"
    template = parse_template(text, Path("t.yaml"))
    assert template.data == {
        "A": {"Ref": "X"},
        "B": {"Fn::GetAtt": ["Q", "Arn"]},
        "C": {"Fn::Sub": "x"},
        "D": {"Fn::If": ["C", 1, 2]},
        "E": {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]},
    }
    assert template.line_of(("D",)) == 4


def test_dates_binary_and_infinities_load_as_their_text() -> None:
    """CloudFormation reads these scalars as strings: unquoted they stay text (YAML 1.1
    would make a date, bytes or a float JSON cannot hold), so Fn::ToJsonString works."""
    text = (
        "A: !ToJsonString {d: 2024-01-01, t: 2024-01-01T10:00:00Z, b: !!binary aGk=, "
        "i: .inf, n: .nan, k: [1, 1.5, true, null]}\nB: 2024-01-01\n"
    )
    data = parse_template(text, Path("t.yaml")).data
    assert data["B"] == "2024-01-01"
    assert context(text).resolve(data["A"], ("A",)) == (
        '{"d":"2024-01-01","t":"2024-01-01T10:00:00Z","b":"aGk=","i":".inf","n":".nan",'
        '"k":[1,1.5,true,null]}'
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A: !Bogus x\n", "t.yaml:1: unknown tag !Bogus"),
        ("A: !GetAtt NoDot\n", "t.yaml:1: !GetAtt 'NoDot': write it as Resource.Attribute"),
        ("A: 1\nA: 2\n", "t.yaml:2: duplicate key 'A'"),
        ("A: [1\n", "t.yaml:2: invalid YAML"),
        ("A: !!python/object:os.system x\n", "t.yaml:1: 'x' cannot be read"),
        ("- 1\n", "t.yaml:1: the template must be a mapping at its top"),
    ],
)
def test_bad_templates_are_one_line_with_file_and_line(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as raised:
        parse_template(text, Path("t.yaml"))
    assert str(raised.value).startswith(message)


def test_an_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    with pytest.raises(TemplateError, match="expand the document"):
        parse_template("\n".join(lines) + "\n", Path("t.yaml"))


def test_resolution_is_bounded() -> None:
    deep: Any = "x"
    for _ in range(200):
        deep = {"Fn::Join": ["", [deep]]}
    with pytest.raises(TemplateError, match="nested more than 64 deep"):
        resolve(deep)
    growing: Any = "x" * 1000
    for _ in range(12):
        growing = {"Fn::Join": ["", [growing, growing]]}
    with pytest.raises(TemplateError, match="longer than 1,000,000 characters"):
        resolve(growing)
    looping = TEMPLATE.replace(
        "IsProd: !Equals [!Ref Stage, prod]", "IsProd: !Not [!Condition IsDev]"
    )
    with pytest.raises(TemplateError, match=r"Conditions\.\w+: the condition depends on itself"):
        context(looping).resolver.condition("IsProd", ())


@pytest.mark.parametrize("function", ["Fn::Join", "Fn::Sub", "Fn::ToJsonString"])
def test_a_string_past_the_limit_is_refused_before_it_is_built(
    tmp_path: Path, function: str
) -> None:
    """A 900,000-character parameter used 300 times (270 MB) in 2 KB of template: one
    line and exit 2 as soon as the limit is passed, the text never built (the importing
    process stays small)."""
    uses = {
        "Fn::Join": f"!Join ['', [{', '.join(['!Ref P'] * 300)}]]",
        "Fn::Sub": f"!Sub '{'${P}' * 300}'",
        "Fn::ToJsonString": f"!ToJsonString [{', '.join(['!Ref P'] * 300)}]",
    }[function]
    template = tmp_path / "template.yaml"
    template.write_text(
        f"Parameters:\n  P: {{Type: String, Default: {'x' * 900_000}}}\n"
        f"Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: {uses}\n"
    )
    # The peak is read in the importing process itself (VmHWM): a child's ru_maxrss would
    # count the forking test worker's memory too.
    peak = tmp_path / "peak"
    probe = (
        "import sys\n"
        "from bridge.cli import main\n"
        "try:\n"
        "    code = main(sys.argv[2:])\n"
        "finally:\n"
        "    status = open('/proc/self/status').read()\n"
        "    open(sys.argv[1], 'w').write(status.split('VmHWM:')[1].split()[0])\n"
        "sys.exit(code)\n"
    )
    command = [sys.executable, "-c", probe, str(peak), "import", "sam", str(template)]
    with (tmp_path / "out").open("w") as out, (tmp_path / "err").open("w") as err:
        process = subprocess.run(command, stdout=out, stderr=err, check=False)
    assert process.returncode == 2 and (tmp_path / "out").read_text() == ""
    assert (tmp_path / "err").read_text() == (
        f"error: {template}:7: Resources.Q.Properties.QueueName.{function}: "
        "the resolved string is longer than 1,000,000 characters\n"
    )
    assert int(peak.read_text()) < 120 * 1024  # KB: about 30 MB; 290 MB when the text was built


def test_problems_name_the_place_in_the_template() -> None:
    with pytest.raises(TemplateError) as raised:
        resolve({"Ref": "Missing"})
    assert (
        str(raised.value)
        == "template.yaml:14: Resources.X.Properties.Y.Ref: no parameter or resource named 'Missing'"
    )
    with pytest.raises(TemplateError, match="'test' is not one of AllowedValues"):
        context(parameter_overrides={"Stage": "test"})
    with pytest.raises(TemplateError, match=r"Fn::GetAtt.*Topic\.Nope .*cannot be known locally"):
        resolve({"Fn::GetAtt": ["Topic", "Nope"]})
    with pytest.raises(TemplateError, match="index 5 is outside the 3 values"):
        resolve({"Fn::Select": [5, {"Ref": "Zones"}]})
    with pytest.raises(TemplateError, match="Fn::ImportValue cannot be resolved locally"):
        resolve({"Fn::ImportValue": "shared"})
