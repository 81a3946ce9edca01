"""The autograded notebook is rendered by formgrader on the Jupyter server's own origin: nothing a
student's kernel displayed may run there, and no Markdown may stall it."""
import nbformat
from nbconvert import HTMLExporter
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from traitlets.config import Config

from autograder.grading.feedback_page import MAX_MARKDOWN_CELL, MAX_MARKDOWN_PAGE, limit_markdown
from autograder.grading.pipeline import InertNotebook

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
SCRIPT = '<img src=x onerror="document.title=\'XSS\'"><script>document.title="XSS2"</script>'


def hostile_notebook():
    outputs = [new_output("display_data", data={"text/html": SCRIPT, "text/plain": "<HTML object>"}),
               new_output("display_data", data={"application/javascript": 'document.title="XSS-js"'}),
               new_output("display_data", data={"image/svg+xml": "<svg onload=alert(1)></svg>", "image/png": PNG}),
               new_output("execute_result", data={"text/html": SCRIPT}, execution_count=3),
               new_output("stream", name="stdout", text="hello\n")]
    return new_notebook(cells=[new_code_cell("display(...)", outputs=outputs),
                               new_markdown_cell("*" * (MAX_MARKDOWN_CELL + 1))])


def test_kernel_outputs_keep_only_text_and_raster_images(released_course):
    nb, _ = InertNotebook().preprocess(hostile_notebook(), {})
    kept = [sorted(out.get("data", {})) or out.output_type for out in nb.cells[0].outputs]
    assert kept == [["text/plain"], ["image/png"], "stream"]  # HTML, JavaScript, SVG dropped; empty result gone

    config = released_course.load_config()  # what formgrader renders the autograded notebook with
    html, _ = HTMLExporter(config=config).from_notebook_node(nbformat.from_dict(nb))
    assert "XSS" not in html and "onerror" not in html and "<svg" not in html
    assert "hello" in html and PNG[:40] in html


def test_the_course_pipeline_makes_the_kernels_outputs_inert_before_anything_stores_them(released_course):
    steps = released_course.load_config().Autograde.autograde_preprocessors
    assert steps.index("autograder.grading.pipeline.InertNotebook") == \
        steps.index("autograder.grading.execute.GradingExecute") + 1
    assert released_course.load_config().HTMLExporter.sanitize_html is True


def test_long_markdown_is_shown_as_plain_text_not_rendered():
    cells = [new_markdown_cell("*" * (MAX_MARKDOWN_CELL + 1)), new_markdown_cell("**fine**")]
    cells += [new_markdown_cell("x" * (MAX_MARKDOWN_CELL - 1)) for _ in range(MAX_MARKDOWN_PAGE // MAX_MARKDOWN_CELL)]
    limit_markdown(cells)
    assert cells[0].source.startswith("```\n") and cells[0].source.endswith("\n```")
    assert cells[1].source == "**fine**"
    plain = [cell.source.startswith("```") for cell in cells[2:]]
    assert plain[0] is False and plain[-1] is True  # past the page's total, the rest is plain text


def test_formgrader_renders_a_long_markdown_cell_as_text(released_course):
    config = Config(released_course.load_config())
    nb = new_notebook(cells=[new_markdown_cell("*" * (MAX_MARKDOWN_CELL + 1))])
    html, _ = HTMLExporter(config=config).from_notebook_node(nb)
    assert "*" * 100 in html and "<em>" not in html
