// Trial module of the 2AFC natural-vs-synthetic task (paradigm `imi`): its layout is
// trial.js's buildTrial (references left and right, two queries in the centre).
export { buildTrial } from "../trial.js";
