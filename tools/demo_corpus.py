"""Offline English training text for the bundled demo model.

Everything comes from files already on this machine: the docstrings of the
Python standard library, read with `ast` from the source files (nothing is
imported, so no module runs its side effects). Two kinds of samples come out:

- documents: one docstring each, cleaned of doctest and reST noise;
- instruction pairs in Mistral's [INST] format, built from the first sentence
  of each documented module, class and function ("What does json.dumps do?" ->
  its summary line), plus a few hand-written exchanges about the demo itself,
  so that chat replies read like answers.
"""
import ast
import os
import random
import re
import sysconfig

# Paragraphs that are mostly code, tables or markup teach the model noise.
_MARKUP = re.compile(r"^\s*(>>>|\.\.\.|\.\. |:param|:type|:return|:rtype|[-=~^*+#|]{3,})")
_INLINE = [(re.compile(r":(?:func|class|meth|mod|attr|data|exc|const|term|ref|pep|rfc):`~?([^`]*)`"), r"\1"),
           (re.compile(r"``([^`]*)``"), r"\1"),
           (re.compile(r"`([^`]*)`"), r"\1")]
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "lib2to3",
              "ensurepip", "turtledemo", "__pycache__", "config-3.11-x86_64-linux-gnu"}

# Written for the demo: what a user of `qinfer chat` is likely to type first.
HANDWRITTEN = [
    ("Hello!", "Hello! I am the tiny demo model that ships with qinfer. Ask me about the Python standard library."),
    ("Hi, who are you?", "I am a very small language model bundled with qinfer. I was trained on the documentation of the Python standard library."),
    ("What can you do?", "I can answer short questions about Python modules, classes and functions. I am small, so check my answers."),
    ("What is qinfer?", "qinfer converts Mistral models to GGUF files and runs them on the CPU."),
    ("What is a GGUF file?", "A GGUF file holds the weights and the metadata of a language model in one file, ready to be loaded for inference."),
    ("Thank you.", "You are welcome."),
    ("Thanks!", "You are welcome. Ask me another question about Python."),
    ("How big are you?", "I have a few million parameters, which is tiny for a language model."),
    ("What is Python?", "Python is a programming language. Its standard library has modules for files, text, numbers, networking and much more."),
    ("Goodbye.", "Goodbye!"),
]

_QUESTIONS = {
    "module": ["What does the {name} module do?", "What is the {name} module for?",
               "Tell me about the {name} module.", "Explain the {name} module."],
    "function": ["What does {name} do?", "What does the function {name} do?",
                 "Explain {name}.", "How do I use {name}?"],
    "class": ["What is {name}?", "What is the {name} class?", "Explain the class {name}.",
              "What does {name} represent?"],
}


# Pure-Python packages installed next to qinfer whose docstrings are mostly
# plain English (torch, transformers and sympy are left out: too much jargon
# and mathematics for a model this small).
SITE_PACKAGES = ["numpy", "networkx", "jinja2", "click", "hypothesis", "attr", "huggingface_hub",
                 "_pytest", "setuptools", "pip", "PIL"]


def default_sources():
    """(root, subfolder) pairs: the whole standard library, then SITE_PACKAGES."""
    paths = sysconfig.get_paths()
    sources = [(paths["stdlib"], "")]
    for pkg in SITE_PACKAGES:
        if os.path.isdir(os.path.join(paths["purelib"], pkg)):
            sources.append((paths["purelib"], pkg))
    return sources


def _source_files(root):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for fn in sorted(filenames):
            if fn.endswith(".py") and not fn.startswith("test_"):
                yield os.path.join(dirpath, fn)


def _module_name(root, path):
    rel = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def clean_docstring(doc):
    """Docstring -> plain paragraphs joined by blank lines, or '' if nothing useful is left."""
    paragraphs = []
    for para in re.split(r"\n\s*\n", doc.strip()):
        lines = [ln.strip() for ln in para.splitlines()]
        if any(_MARKUP.match(ln) for ln in lines):
            continue
        text = " ".join(ln for ln in lines if ln)
        for pattern, repl in _INLINE:
            text = pattern.sub(repl, text)
        letters = sum(c.isalpha() or c == " " for c in text)
        # Keep prose: mostly letters and spaces, ASCII, at least a short sentence.
        if len(text) >= 20 and letters >= 0.8 * len(text) and text.isascii():
            paragraphs.append(text)
    return "\n\n".join(paragraphs)


def _summary(doc):
    """The first sentence of a cleaned docstring, if it reads like an answer."""
    first = doc.split("\n\n", 1)[0]
    m = re.match(r"(.+?[.!?])(\s|$)", first)
    sentence = m.group(1) if m else first
    if len(sentence) < 25 or len(sentence) > 300 or not sentence[0].isupper():
        return ""
    return sentence if sentence.endswith((".", "!", "?")) else sentence + "."


def _documented(tree, modname):
    """(kind, qualified name, docstring) for the module and its public top-level
    classes, functions and methods."""
    doc = ast.get_docstring(tree)
    if doc:
        yield "module", modname, doc
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            doc = ast.get_docstring(node)
            if doc:
                yield kind, f"{modname}.{node.name}", doc
            if isinstance(node, ast.ClassDef):
                for sub in node.body:
                    if isinstance(sub, ast.FunctionDef) and not sub.name.startswith("_"):
                        doc = ast.get_docstring(sub)
                        if doc:
                            yield "function", f"{modname}.{node.name}.{sub.name}", doc


def gather(sources=None, seed=0):
    """Return (documents, pairs): cleaned docstrings and (question, answer) tuples
    from the Python files under each (root, subfolder) of `sources`."""
    rng = random.Random(seed)
    documents, pairs, seen = [], [], set()
    for root, sub in sources or default_sources():
        _gather_tree(root, sub, rng, documents, pairs, seen)
    return documents, pairs


def _gather_tree(root, sub, rng, documents, pairs, seen):
    for path in _source_files(os.path.join(root, sub)):
        modname = _module_name(root, path)
        try:
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a few stdlib files are deliberately invalid (bad encodings, py2 samples)
        for kind, name, raw in _documented(tree, modname):
            doc = clean_docstring(raw)
            if not doc or doc in seen:
                continue
            seen.add(doc)
            documents.append(doc)
            answer = _summary(doc)
            # No questions about private modules: users would not ask them.
            if answer and not any(part.startswith("_") for part in name.split(".")[1:]):
                question = rng.choice(_QUESTIONS[kind]).format(name=name)
                pairs.append((question, answer))


if __name__ == "__main__":
    docs, pairs = gather()
    chars = sum(map(len, docs))
    print(f"{len(docs)} documents, {chars / 1e6:.1f} M characters, {len(pairs)} instruction pairs")
    for q, a in random.Random(1).sample(pairs, 8):
        print(f"[INST] {q} [/INST] {a}")
    print("---")
    print(random.Random(2).choice(docs))
