"""The Go-template subset of `inspect -f` and `ps --format`, against what Go prints."""

import pytest

from ctr.cli.template import render
from ctr.errors import InvalidSpec

DOC = {"State": {"Pid": 42, "Running": True}, "Name": "/web", "Args": [], "X": None,
       "Config": {"Env": ["A=1", "B=2"], "Labels": {"k": "v", "a": "b"}},
       "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "10.0.0.2"}}}}


@pytest.mark.parametrize("template, out", [
    ("{{.State.Pid}}", "42"),
    ("{{.State.Running}}", "true"),
    ("{{ .Name }}", "/web"),
    ("{{json .Config.Env}}", '["A=1","B=2"]'),
    ('{{index .Config.Labels "k"}}', "v"),
    ('{{join .Config.Env ","}}', "A=1,B=2"),
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "10.0.0.2"),
    ("{{if .Args}}yes{{else}}no{{end}}", "no"),
    ("{{.Nope}}", "<no value>"),
    ("{{.Config.Labels}}", "map[a:b k:v]"),
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{.X}}", "<nil>"),
    ("a {{- .Name -}} b", "a/webb"),
    ("{{len .Config.Env}}", "2"),
    ("{{upper .Name}}", "/WEB"),
    ("{{range .Config.Env}}{{println .}}{{end}}", "A=1\nB=2\n"),
])
def test_render(template, out):
    assert render(template, DOC) == out


@pytest.mark.parametrize("template", ["{{if .Name}}", "{{end}}", "{{nosuch .Name}}",
                                      "{{.Name.Sub}}", "{{}}"])
def test_bad_templates_are_refused(template):
    with pytest.raises(InvalidSpec, match="template"):
        render(template, DOC)


def test_a_pulled_images_docker_view():
    from ctr.docker_view import image_view

    meta = {"name": "127.0.0.1:5000/app:1.0", "id": "sha256:c0", "digest": "sha256:d1",
            "layers": ["sha256:a", "sha256:b"], "size": 10, "created": "2026-01-01T00:00:00Z",
            "config": {"Entrypoint": ["/app"], "Cmd": ["-v"]}, "architecture": "arm64"}
    view = image_view(meta)
    assert view["RepoTags"] == ["127.0.0.1:5000/app:1.0"]
    assert view["RepoDigests"] == ["127.0.0.1:5000/app@sha256:d1"]
    assert view["RootFS"]["Layers"] == ["sha256:a", "sha256:b"]
    assert render("{{json .Config.Entrypoint}} {{.Architecture}}", view) == '["/app"] arm64'
