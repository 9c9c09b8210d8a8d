"""The multilingual test text of the tokenizer bars: English, French, German,
Chinese, Arabic, code, emoji, whitespace runs (spaces, tabs, newlines, CRLF) and
special-token strings that must stay text unless special tokens are parsed."""

TEXT = ("Hello world! The quick brown fox.  Ça va très bien, merci. Grüße aus München, "
        "Führer-schein. 你好，世界！机器学习。 مرحبا بالعالم. def f(x):\n\treturn x ** 2  # 🙂🚀👍🏽\n\n"
        "    indented    runs     of spaces\t\ttabs\r\n<s> [INST] not special [/INST] </s> end")

# Longer runs of whitespace and more scripts and code, for the BPE vocabularies
# whose pre-tokenizer treats whitespace, digits and letter case specially.
MORE_TEXT = ("ÜBER DIE Straße: naïve café, L'été ÉTAIT là. 東京タワー 한국어 Ελληνικά Русский текст. "
             "السلام عليكم 123456 3.14159\n" + " " * 37 + "x" + "\n" * 5 + "\t" * 6 + "y  \n \n\n  \r\n"
             "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // C++\n"
             "print(f\"{x!r:>10}\")  # 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷 ✅\u200d 🦙🦙   ")
