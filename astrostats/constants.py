"""The project's fixed numbers, each defined once with its source; torch-free, so the report may import it.

Biological scale (see ../shared/reference/astrocyte-biophysics.md):

* one rodent astrocyte contacts about 1e5 synapses (Bushong et al. 2002 J Neurosci; "a single astrocyte may
  contact about 100,000 synapses", Lines et al. eLife 90046);
* one human astrocyte contacts about 2.7e5 to 2e6 synapses (Oberheim et al. 2006 TINS; 2009 J Neurosci);
* one hippocampal CA1 interneuron receives 2,186 (calretinin), 3,839 (calbindin) or 16,294 (parvalbumin)
  synapses on average (Gulyas et al. 1999 J Neurosci 19:10082), one CA1 pyramidal cell about 31,700
  (30,000 excitatory and 1,700 inhibitory; Megias et al. 2001 Neuroscience 102:527): the input limits of the
  neurons that would have to do the astrocyte's summation in a neurons-only circuit (claim C7).

The error tolerance is the relative output error at which the circuit is said to agree with attention.
"""
from __future__ import annotations

RODENT_SYNAPSES = 1.0e5  # one rodent astrocyte (Bushong et al. 2002; Lines et al. eLife 90046)
HUMAN_SYNAPSES = 2.0e6  # one human astrocyte, upper end (Oberheim et al. 2006, 2009)
SYNAPSE_SOURCES = {
    "rodent": "Bushong et al. 2002 J Neurosci; Lines et al. eLife 90046 ('about 100,000 synapses')",
    "human": "Oberheim et al. 2006 TINS; 2009 J Neurosci (270,000 to 2,000,000)",
    "interneuron": "Gulyas, Megias, Emri & Freund 1999 J Neurosci 19:10082 (PV 16,294; CB 3,839; CR 2,186 synapses)",
    "pyramidal": "Megias, Emri, Freund & Gulyas 2001 Neuroscience 102:527 (about 30,000 excitatory, 1,700 inhibitory)",
}
INTERNEURON_SYNAPSES = {"calretinin": 2186.0, "calbindin": 3839.0, "parvalbumin": 16294.0}  # Gulyas et al. 1999
PYRAMIDAL_SYNAPSES = 31700.0  # one CA1 pyramidal cell (Megias et al. 2001)
TOLERANCE = 0.10  # relative error |Y_hat - Y|_F / |Y|_F at which a circuit "agrees" with attention
EPSILONS = (TOLERANCE, 0.01)  # tolerances at which m_required is reported
#: the circuit under audit when a spec or the command line names none (the paper's neuron–astrocyte circuit),
#: and its feature map (the paper's positive random features)
DEFAULT_CIRCUIT = "astrocyte"
DEFAULT_FEATURE_MAP = "positive"

__all__ = ["RODENT_SYNAPSES", "HUMAN_SYNAPSES", "INTERNEURON_SYNAPSES", "PYRAMIDAL_SYNAPSES", "SYNAPSE_SOURCES", "TOLERANCE", "EPSILONS",
           "DEFAULT_CIRCUIT", "DEFAULT_FEATURE_MAP"]
