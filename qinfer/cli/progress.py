"""The progress bar of `qinfer convert` and `qinfer quantize`: tensor name, bytes
done, rate and ETA on stderr when it is a terminal; nothing otherwise or with -q."""
import sys


class ProgressBar:
    def __init__(self, desc, quiet):
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=0, unit="B", unit_scale=True, desc=desc, file=sys.stderr)

    def __call__(self, name, done, total, elapsed):
        """The `progress=` callback of qinfer.convert / qinfer.quantize."""
        if self.bar is None:
            return
        if done < self.bar.n:    # a new phase (md5 check, then conversion) starts from zero
            self.bar.reset()
        self.bar.total = total
        self.bar.set_postfix_str(name)
        self.bar.update(done - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()
