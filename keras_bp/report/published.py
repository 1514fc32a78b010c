"""The recipe's published result, pinned in one place with where it was printed.

Deep Learning with Python (François Chollet, Manning), 1st edition, chapter 2, section 2.1 "A first
look at a neural network". Its companion notebook runs the recipe on Keras 2.0.8 (TensorFlow
backend), and its saved outputs print:

    test_loss, test_acc = network.evaluate(test_images, test_labels)
        ->  " 9536/10000 [===========================>..] - ETA: 0s"   (a progress bar only)
    print('test_acc:', test_acc)
        ->  "test_acc: 0.9777"

The notebook never prints `test_loss`, so there is no published test loss. Its text rounds the
figure: "Our test set accuracy turns out to be 97.8%". The last epoch of `fit` prints
"loss: 0.0382 - acc: 0.9890" on the training data.

The same repository's 2nd-edition `second_edition/chapter02_mathematical-building-blocks.ipynb`
and 3rd-edition `chapter02_mathematical-building-blocks.ipynb` are saved without outputs.

One run is one draw: a 2019 rerun of the notebook (commit 344a93f) printed "test_acc: 0.9787",
and a 2021 commit (91f5883) restored the original outputs: the same file, byte for byte, that
fchollet added in 96d58b5 (2017-09-05).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """A result exactly as printed, and the file and commit it was read from.

    Args:
        test_accuracy: the printed `test_acc`.
        test_loss: the printed test loss; `None` when the source does not print it.
        stated_test_accuracy: the figure the notebook's text states (97.8% is 0.978).
        train_accuracy, train_loss: the `acc` and `loss` of `fit`'s last epoch.
        printed: the line that prints `test_accuracy`, verbatim.
        keras_version: the Keras that produced the outputs, as the notebook prints it.
        book: the book, edition and section the notebook accompanies.
        repo, path, commit: where the figures were read.
    """

    test_accuracy: float
    test_loss: float | None
    stated_test_accuracy: float
    train_accuracy: float
    train_loss: float
    printed: str
    keras_version: str
    book: str
    repo: str
    path: str
    commit: str

    @property
    def url(self) -> str:
        """A permalink to the file at the commit read."""
        return f"https://github.com/{self.repo}/blob/{self.commit}/{self.path}"

    @property
    def source(self) -> str:
        return f"{self.book}: {self.repo}, {self.path} @ {self.commit[:12]}"


PUBLISHED = Published(
    test_accuracy=0.9777,
    test_loss=None,
    stated_test_accuracy=0.978,
    train_accuracy=0.9890,
    train_loss=0.0382,
    printed="test_acc: 0.9777",
    keras_version="2.0.8",
    book="Deep Learning with Python, 1st edition, chapter 2, section 2.1",
    repo="fchollet/deep-learning-with-python-notebooks",
    path="first_edition/2.1-a-first-look-at-a-neural-network.ipynb",
    commit="dea84a4e12cc3bb3cb61ce952a0168bca113d315",
)
